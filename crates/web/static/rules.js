// A board's rules as the page understands them: which way scores rank, what
// a submitted score does, and the words that say so. Pure functions, no DOM,
// so they can be tested on their own.

/** The rules of a board of an earlier release, which has none. */
export const DEFAULT_RULES = Object.freeze({ order: 'desc', operator: 'incr', top: 5, reset: null });

/** A board's rules with every field filled in; unknown values fall back to the defaults. */
export function normalizeRules(rules) {
  const r = rules && typeof rules === 'object' ? rules : {};
  return {
    order: r.order === 'asc' ? 'asc' : 'desc',
    operator: ['incr', 'set', 'best'].includes(r.operator) ? r.operator : 'incr',
    top: Number.isInteger(r.top) && r.top > 0 ? r.top : DEFAULT_RULES.top,
    reset: typeof r.reset === 'string' && r.reset ? r.reset : null,
  };
}

const hasScore = (s) => typeof s === 'number' && Number.isFinite(s);

/**
 * Whether score `a` ranks strictly before score `b` under `order`. A player
 * with no score yet (null, on a `set` or `best` board) ranks after everyone.
 */
export function isBetter(order, a, b) {
  if (!hasScore(a)) return false;
  if (!hasScore(b)) return true;
  return order === 'asc' ? a < b : a > b;
}

/** The better of two scores under `order`. */
export function better(order, a, b) {
  return isBetter(order, b, a) ? b : a;
}

/**
 * A comparator that orders players as the server does: better score first,
 * then, on equal scores, by id in the index's own order read the board's
 * way (descending on a `desc` board, ascending on an `asc` one), so a local
 * re-sort agrees with the next snapshot.
 */
export function rankComparator(order) {
  const sign = order === 'asc' ? 1 : -1;
  return (a, b) => {
    if (a.score !== b.score) {
      if (isBetter(order, a.score, b.score)) return -1;
      if (isBetter(order, b.score, a.score)) return 1;
    }
    if (a.id === b.id) return 0;
    return (a.id < b.id ? -1 : 1) * sign;
  };
}

const ORDER_TEXT = { desc: 'Higher is better', asc: 'Lower is better' };
const OPERATOR_TEXT = { incr: 'points add up', set: 'latest score counts', best: 'best result kept' };
const RESET_TEXT = { daily: 'resets daily', weekly: 'resets weekly', monthly: 'resets monthly' };

/** What a reset schedule means, in words: "resets daily", or the cron expression (UTC). */
export function resetText(reset) {
  if (!reset) return '';
  return RESET_TEXT[reset] ?? `resets on the schedule “${reset}” (UTC)`;
}

/** The rules in plain words, e.g. "Lower is better · best result kept · top 10". */
export function rulesText(rules) {
  const r = normalizeRules(rules);
  const parts = [ORDER_TEXT[r.order], OPERATOR_TEXT[r.operator], `top ${r.top}`];
  if (r.reset) parts.push(resetText(r.reset));
  return parts.join(' · ');
}

/** What a submission through `score/` does on a board with these rules. */
export function submitHint(rules) {
  const r = normalizeRules(rules);
  if (r.operator === 'set') return 'The value replaces the player’s score.';
  if (r.operator === 'best') {
    const way = r.order === 'asc' ? 'lower' : 'higher';
    return `Kept only if it beats the player’s best (${way} is better).`;
  }
  return 'The value is added to the player’s score.';
}

/**
 * The time left until a reset, for a countdown: "2 d 3 h", "3 h 05 min",
 * "4 min 09 s", "9 s". Null once the time has come.
 */
export function countdownText(ms) {
  if (!(ms > 0)) return null;
  const total = Math.ceil(ms / 1000);
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const two = (n) => String(n).padStart(2, '0');
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${two(minutes)} min`;
  if (minutes > 0) return `${minutes} min ${two(seconds)} s`;
  return `${seconds} s`;
}
