// Unit tests of the page's optimistic bookkeeping (static/model.js) and its
// reading of a board's rules (static/rules.js).
// No browser and no stack needed: node --test e2e/model.test.mjs

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { BoardState, HOLD_MS, byRank } from '../crates/web/static/model.js';
import {
  countdownText,
  isBetter,
  normalizeRules,
  rankComparator,
  rulesText,
  submitHint,
} from '../crates/web/static/rules.js';

/** A snapshot; players are `[id, score]`, ranks are their places. */
const board = (...players) => boardWith({}, ...players);
const boardWith = (rules, ...players) => ({
  id: 'b',
  name: 'B',
  rules: { order: 'desc', operator: 'incr', top: 5, ...rules },
  players: players.map(([id, score], i) => ({ id, name: id.toUpperCase(), score, rank: i + 1 })),
});
const asc = (operator, ...players) => boardWith({ order: 'asc', operator }, ...players);
const scores = (state, now) => state.view(now).players.map((p) => `${p.id}:${p.score}`);
const ranks = (state, now) => state.view(now).players.map((p) => `${p.rank}:${p.id}`);

describe('points that add up, higher is better', () => {
  test('no view before the first snapshot', () => {
    assert.equal(new BoardState('b').view(0), null);
  });

  test('a click shows at once and re-sorts', () => {
    const s = new BoardState('b');
    s.applySnapshot(board(['a', 2], ['c', 2]), 0);
    s.begin('c');
    assert.deepEqual(scores(s, 0), ['c:3', 'a:2']);
    assert.equal(s.view(0).players[0].pending, true);
  });

  test('a failed click rolls back', () => {
    const s = new BoardState('b');
    s.applySnapshot(board(['a', 5]), 0);
    s.begin('a');
    s.begin('a');
    s.settle('a', null, 10);
    assert.deepEqual(scores(s, 10), ['a:6']);
    s.settle('a', null, 20);
    assert.deepEqual(scores(s, 20), ['a:5']);
    assert.equal(s.isPending('a'), false);
  });

  test('an answer holds off an older snapshot until the stream catches up', () => {
    const s = new BoardState('b');
    s.applySnapshot(board(['a', 5]), 0);
    s.begin('a');
    s.settle('a', { id: 'a', name: 'A', score: 6 }, 100);
    // Published before the increment, delivered after the answer.
    s.applySnapshot(board(['a', 5]), 150);
    assert.deepEqual(scores(s, 150), ['a:6']);
    // The stream has it now; from here on the stream decides.
    s.applySnapshot(board(['a', 6]), 200);
    assert.equal(s.nextExpiry(), null);
    s.applySnapshot(board(['a', 4]), 300);
    assert.deepEqual(scores(s, 300), ['a:4']);
  });

  test('the hold lapses, so a real decrease by someone else shows', () => {
    const s = new BoardState('b');
    s.applySnapshot(board(['a', 5]), 0);
    s.begin('a');
    s.settle('a', { id: 'a', name: 'A', score: 6 }, 100);
    s.applySnapshot(board(['a', 1]), 200);
    assert.deepEqual(scores(s, 200), ['a:6']);
    assert.equal(s.nextExpiry(), 100 + HOLD_MS);
    assert.deepEqual(scores(s, 100 + HOLD_MS), ['a:1']);
  });

  test('answers out of order keep the higher score', () => {
    const s = new BoardState('b');
    s.applySnapshot(board(['a', 0]), 0);
    s.begin('a');
    s.begin('a');
    assert.deepEqual(scores(s, 0), ['a:2']);
    s.settle('a', { id: 'a', name: 'A', score: 2 }, 10);
    s.settle('a', { id: 'a', name: 'A', score: 1 }, 20);
    assert.deepEqual(scores(s, 20), ['a:2']);
  });

  test('a token settles its own write, not the oldest', () => {
    const s = new BoardState('b');
    s.applySnapshot(board(['a', 0]), 0);
    s.begin('a');
    const second = s.begin('a', { kind: 'submit', value: 10 });
    s.settle('a', null, 5, second);
    assert.deepEqual(scores(s, 5), ['a:1']);
  });

  test('a submission on an incr board adds its value; a negative one is held exactly', () => {
    const s = new BoardState('b');
    s.applySnapshot(board(['a', 5], ['c', 3]), 0);
    const t = s.begin('c', { kind: 'submit', value: -4 });
    assert.deepEqual(scores(s, 0), ['a:5', 'c:-1']);
    s.settle('c', { id: 'c', name: 'C', score: -1, changed: true }, 10, t);
    // The older snapshot's 3 is higher, but it is not the newer score.
    s.applySnapshot(board(['a', 5], ['c', 3]), 20);
    assert.deepEqual(scores(s, 20), ['a:5', 'c:-1']);
    s.applySnapshot(board(['a', 5], ['c', -1]), 30);
    assert.equal(s.nextExpiry(), null);
  });

  test('ties sort as the server does: by id, descending', () => {
    const players = [{ id: 'a', score: 1 }, { id: 'c', score: 1 }, { id: 'b', score: 2 }];
    assert.deepEqual(players.sort(byRank).map((p) => p.id), ['b', 'c', 'a']);
  });

  test('ranks stay with the places while players move through them', () => {
    const s = new BoardState('b');
    s.applySnapshot(board(['a', 3], ['c', 2], ['d', 1]), 0);
    assert.deepEqual(ranks(s, 0), ['1:a', '2:c', '3:d']);
    s.begin('d');
    s.begin('d');
    s.begin('d');
    assert.deepEqual(ranks(s, 0), ['1:d', '2:a', '3:c']);
  });
});

describe('lower is better', () => {
  test('ties sort by id, ascending, and lower scores first', () => {
    const players = [{ id: 'b', score: 5 }, { id: 'a', score: 5 }, { id: 'c', score: 2 }];
    assert.deepEqual(players.sort(rankComparator('asc')).map((p) => p.id), ['c', 'a', 'b']);
    const s = new BoardState('b');
    s.applySnapshot(asc('incr', ['b', 5], ['a', 5], ['c', 2]), 0);
    assert.deepEqual(ranks(s, 0), ['1:c', '2:a', '3:b']);
  });

  test('a "+1" is a worse score: the player moves down, not up', () => {
    const s = new BoardState('b');
    s.applySnapshot(asc('incr', ['a', 4], ['c', 5]), 0);
    s.begin('a');
    s.begin('a');
    // 6 is worse than c's 5 on this board.
    assert.deepEqual(scores(s, 0), ['c:5', 'a:6']);
    assert.deepEqual(ranks(s, 0), ['1:c', '2:a']);
    assert.equal(isBetter('asc', 6, 4), false);
    assert.equal(isBetter('asc', 4, 6), true);
  });

  test('a "+1" answer is held against an older, lower snapshot', () => {
    const s = new BoardState('b');
    s.applySnapshot(asc('incr', ['a', 4], ['c', 5]), 0);
    s.begin('a');
    s.settle('a', { id: 'a', name: 'A', score: 5 }, 10);
    // The older snapshot's 4 looks better, but the write has happened.
    s.applySnapshot(asc('incr', ['a', 4], ['c', 5]), 20);
    assert.deepEqual(scores(s, 20), ['a:5', 'c:5']);
    s.applySnapshot(asc('incr', ['a', 5], ['c', 5]), 30);
    assert.equal(s.nextExpiry(), null);
  });

  test('best: a faster result shows at once, a slower one changes nothing', () => {
    const s = new BoardState('b');
    s.applySnapshot(asc('best', ['a', 60], ['c', 65]), 0);
    const slower = s.begin('c', { kind: 'submit', value: 70 });
    assert.deepEqual(scores(s, 0), ['a:60', 'c:65']);
    s.settle('c', { id: 'c', name: 'C', score: 65, changed: false }, 5, slower);
    const faster = s.begin('c', { kind: 'submit', value: 55 });
    assert.deepEqual(scores(s, 10), ['c:55', 'a:60']);
    assert.equal(s.view(10).players[0].pending, true);
    s.settle('c', { id: 'c', name: 'C', score: 55, changed: true }, 20, faster);
    // An older snapshot, from before the write, does not undo it.
    s.applySnapshot(asc('best', ['a', 60], ['c', 65]), 30);
    assert.deepEqual(scores(s, 30), ['c:55', 'a:60']);
    // A snapshot at least as good is the stream catching up.
    s.applySnapshot(asc('best', ['c', 55], ['a', 60]), 40);
    assert.equal(s.nextExpiry(), null);
  });

  test('best: answers out of order keep the better (lower) one', () => {
    const s = new BoardState('b');
    s.applySnapshot(asc('best', ['a', 60]), 0);
    const first = s.begin('a', { kind: 'submit', value: 50 });
    const second = s.begin('a', { kind: 'submit', value: 40 });
    assert.deepEqual(scores(s, 0), ['a:40']);
    s.settle('a', { id: 'a', name: 'A', score: 40, changed: true }, 10, second);
    s.settle('a', { id: 'a', name: 'A', score: 50, changed: true }, 20, first);
    s.applySnapshot(asc('best', ['a', 50]), 30);
    assert.deepEqual(scores(s, 30), ['a:40']);
  });

  test('a failed submission rolls back', () => {
    const s = new BoardState('b');
    s.applySnapshot(asc('best', ['a', 60], ['c', 65]), 0);
    const t = s.begin('c', { kind: 'submit', value: 10 });
    assert.deepEqual(scores(s, 0), ['c:10', 'a:60']);
    s.settle('c', null, 10, t);
    assert.deepEqual(scores(s, 10), ['a:60', 'c:65']);
  });
});

describe('set', () => {
  test('a submission replaces the score, either way, and re-sorts', () => {
    const s = new BoardState('b');
    s.applySnapshot(boardWith({ operator: 'set' }, ['a', 10], ['c', 8]), 0);
    s.begin('a', { kind: 'submit', value: 3 });
    assert.deepEqual(scores(s, 0), ['c:8', 'a:3']);
  });

  test('only the very score answered ends the hold', () => {
    const s = new BoardState('b');
    s.applySnapshot(boardWith({ operator: 'set' }, ['a', 10]), 0);
    const t = s.begin('a', { kind: 'submit', value: 3 });
    s.settle('a', { id: 'a', name: 'A', score: 3, changed: true }, 10, t);
    // Higher or lower, a score other than 3 is from before the write.
    s.applySnapshot(boardWith({ operator: 'set' }, ['a', 10]), 20);
    assert.deepEqual(scores(s, 20), ['a:3']);
    s.applySnapshot(boardWith({ operator: 'set' }, ['a', 3]), 30);
    assert.equal(s.nextExpiry(), null);
    // Now someone else's set shows at once.
    s.applySnapshot(boardWith({ operator: 'set' }, ['a', 7]), 40);
    assert.deepEqual(scores(s, 40), ['a:7']);
  });

  test('the hold lapses if the stream never shows it', () => {
    const s = new BoardState('b');
    s.applySnapshot(boardWith({ operator: 'set', order: 'asc' }, ['a', 10]), 0);
    const t = s.begin('a', { kind: 'submit', value: 3 });
    s.settle('a', { id: 'a', name: 'A', score: 3, changed: true }, 10, t);
    s.applySnapshot(boardWith({ operator: 'set', order: 'asc' }, ['a', 12]), 20);
    assert.deepEqual(scores(s, 20), ['a:3']);
    assert.deepEqual(scores(s, 10 + HOLD_MS), ['a:12']);
  });
});

describe('rules in words', () => {
  test('the rules line', () => {
    assert.equal(rulesText(undefined), 'Higher is better · points add up · top 5');
    assert.equal(rulesText({ order: 'asc', operator: 'best', top: 10 }), 'Lower is better · best result kept · top 10');
    assert.equal(rulesText({ order: 'desc', operator: 'set', top: 1 }), 'Higher is better · latest score counts · top 1');
    assert.equal(rulesText({ order: 'asc', operator: 'best', top: 3, reset: 'weekly' }),
      'Lower is better · best result kept · top 3 · resets weekly');
    assert.equal(rulesText({ top: 5, reset: '0 6 * * *' }),
      'Higher is better · points add up · top 5 · resets on the schedule “0 6 * * *” (UTC)');
  });

  test('unknown or missing rules read as the defaults', () => {
    assert.deepEqual(normalizeRules({ order: 'up', operator: 'max', top: 0, reset: null }),
      { order: 'desc', operator: 'incr', top: 5, reset: null });
  });

  test('what a submission does', () => {
    assert.match(submitHint({ operator: 'incr' }), /added/);
    assert.match(submitHint({ operator: 'set' }), /replaces/);
    assert.match(submitHint({ operator: 'best', order: 'asc' }), /lower is better/);
  });

  test('a player with no score ranks after every score', () => {
    assert.equal(isBetter('asc', 1000, null), true);
    assert.equal(isBetter('desc', null, -1000), false);
    const players = [{ id: 'x', score: null }, { id: 'y', score: 9 }];
    assert.deepEqual(players.sort(rankComparator('asc')).map((p) => p.id), ['y', 'x']);
  });

  test('the countdown to a reset', () => {
    const s = 1000;
    assert.equal(countdownText(0), null);
    assert.equal(countdownText(-5), null);
    assert.equal(countdownText(400), '1 s');
    assert.equal(countdownText(59 * s), '59 s');
    assert.equal(countdownText(4 * 60 * s + 9 * s), '4 min 09 s');
    assert.equal(countdownText(3 * 3600 * s + 5 * 60 * s), '3 h 05 min');
    assert.equal(countdownText(2 * 86400 * s + 3 * 3600 * s + 59 * s), '2 d 3 h');
  });
});
