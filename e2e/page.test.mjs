// Browser test of the leaderboard page, through Pushpin, in Debian's
// Chromium driven by playwright-core.
//
//   LEADERBOARD_URL=http://localhost:7999 node --test e2e/page.test.mjs
//
// It needs a running stack (scripts/up starts one on :7999) and works on
// boards of its own, with unique ids, so it can run beside other tests.
// Screenshots go to e2e/artifacts/.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const BASE = (process.env.LEADERBOARD_URL || 'http://localhost:7999').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));

// Without the background-networking flags Chromium dials out on start, and
// on a closed network its connections are then refused.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const uniqueId = (prefix) =>
  `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

// ---------------------------------------------------------------------------
// The API, as another client sees it

async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(BASE + path, init);
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  }
  return text ? JSON.parse(text) : null;
}

/** Any answer, as `{status, body}`, for the requests that are meant to fail. */
async function apiAnswer(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(BASE + path, init);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function waitForStack() {
  const deadline = Date.now() + 20_000;
  let last;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${BASE}/readyz`);
      if (response.ok) return;
      last = `status ${response.status}`;
    } catch (err) {
      last = err.cause?.code || err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`no leaderboard at ${BASE} (${last}); start one with scripts/up or set LEADERBOARD_URL`);
}

/** Polls the API until `check(board)` holds, or fails after `ms`. */
/** Polls `probe` until it answers something truthy; answers that. */
async function eventually(probe, ms = 5000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`never came true within ${ms} ms`);
}

async function eventuallyBoard(id, check, ms = 5000) {
  const deadline = Date.now() + ms;
  let board;
  while (Date.now() < deadline) {
    board = await api('GET', `/boards/${id}/`);
    if (check(board)) return board;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`board ${id} never matched; last seen ${JSON.stringify(board)}`);
}

/**
 * Polls a resetting board until its period is later than `after`, and
 * answers the board then: just after a reset, so with a whole period ahead.
 */
async function nextPeriod(id, after, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const board = await api('GET', `/boards/${id}/`);
    if (board.period.number > after) return board;
    if (Date.now() > deadline) assert.fail(`board ${id} stayed in period ${board.period.number} for ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// ---------------------------------------------------------------------------
// The page, as a person sees it

/** The rows of a player list: `[{id, name, score, rank}]`. */
function rows(page, list = '#players') {
  return page.$$eval(`${list} > li`, (lis) =>
    lis.map((li) => ({
      id: li.dataset.id,
      rank: Number(li.querySelector('.rank').textContent),
      name: li.querySelector('.name').textContent,
      score: Number(li.querySelector('.score-value').textContent.replace(/[^\d-]/g, '')),
    })),
  );
}

/** Waits until the row of `playerId` shows `score`. */
function waitForScore(page, playerId, score, timeout) {
  return page.waitForFunction(
    ([id, want]) => {
      const li = document.querySelector(`#players > li[data-id="${id}"]`);
      const shown = li && Number(li.querySelector('.score-value').textContent.replace(/[^\d-]/g, ''));
      return shown === want;
    },
    [playerId, score],
    { timeout },
  );
}

/** Waits until the player list shows these names, in this order. */
function waitForNames(page, names, list = '#players', timeout = 3000) {
  return page.waitForFunction(
    ([selector, want]) => {
      const shown = [...document.querySelectorAll(`${selector} > li .name`)].map((n) => n.textContent);
      return shown.join('|') === want.join('|');
    },
    [list, names],
    { timeout },
  );
}

/** Waits until a player list shows exactly these `rank:name:score` rows. */
async function waitForRows(page, want, list = '#players', timeout = 3000) {
  try {
    await page.waitForFunction(
      ([selector, expected]) => {
        const shown = [...document.querySelectorAll(`${selector} > li`)].map((li) => [
          li.querySelector('.rank').textContent,
          li.querySelector('.name').textContent,
          li.querySelector('.score-value').textContent.replace(/[^\d-]/g, ''),
        ].join(':'));
        return shown.join('|') === expected.join('|');
      },
      [list, want],
      { timeout },
    );
  } catch (err) {
    const shown = (await rows(page, list)).map((r) => `${r.rank}:${r.name}:${r.score}`);
    assert.fail(`${list} never showed ${want.join(', ')}; it shows ${shown.join(', ')} (${err.message})`);
  }
}

/** Creates a board and its players through the API; `scores` go through score-add or score/. */
async function makeBoard(id, name, rules, players, via = 'score-add') {
  await api('POST', '/boards/', { id, name, ...rules });
  for (const [pid, pname, score] of players) {
    await api('POST', `/boards/${id}/players/`, { id: `${id}-${pid}`, name: pname });
    if (score === undefined) continue;
    await api('POST', `/boards/${id}/players/${id}-${pid}/${via}/`, { value: score });
  }
}

/** Waits for the countdown to a reset to be shown; answers `{at, text}`. */
async function countdown(page, timeout = 5000) {
  const shown = await page.waitForFunction(() => {
    const line = document.getElementById('reset-line');
    const time = document.getElementById('reset-time');
    const label = document.getElementById('reset-label').textContent;
    return !line.hidden && label === 'Next reset in' && { at: time.dateTime, text: time.textContent };
  }, null, { timeout });
  return shown.jsonValue();
}

function waitForStatus(page, state, timeout = 5000) {
  return page.waitForFunction(
    (want) => document.getElementById('connection').dataset.state === want,
    state,
    { timeout },
  );
}

// ---------------------------------------------------------------------------

describe('leaderboard page', () => {
  let context;
  let page;
  let profile;
  const problems = []; // console errors and uncaught exceptions, e.g. CSP refusals
  const boardId = uniqueId('e2e');
  const formBoardId = uniqueId('e2e-form');
  const rulesBoardId = uniqueId('e2e-rules');
  const findBoardId = uniqueId('e2e-find');
  const lapsId = uniqueId('e2e-laps');
  const golfId = uniqueId('e2e-golf');
  const cronBoardId = uniqueId('e2e-cron');
  const weeklyBoardId = uniqueId('e2e-weekly');
  const resetBoardId = uniqueId('e2e-resets');
  const created = [boardId, findBoardId, lapsId, golfId];

  before(async () => {
    await waitForStack();
    await mkdir(ARTIFACTS, { recursive: true });

    await api('POST', '/boards/', { id: boardId, name: 'E2E board' });
    for (const [id, name, score] of [['ann', 'Ann', 5], ['ben', 'Ben', 3], ['cy', 'Cy', 1]]) {
      const player = await api('POST', `/boards/${boardId}/players/`, { id: `${boardId}-${id}`, name });
      await api('POST', `/boards/${boardId}/players/${player.id}/score-add/`, { value: score });
    }

    profile = await mkdtemp(join(tmpdir(), 'leaderboard-e2e-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: DESKTOP,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => {
      // The 409 is the duplicate board the form test submits on purpose, the
      // 400 its bad cron expression, the 503 the outage the rollback test
      // stages.
      const expected = /^Failed to load resource: .* (400 \(Bad Request\)|409 \(Conflict\)|503 \(Service Unavailable\))$/;
      if (msg.type() === 'error' && !expected.test(msg.text())) problems.push(`console: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  });

  after(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    for (const id of created) {
      await fetch(`${BASE}/boards/${id}/`, { method: 'DELETE' }).catch(() => {});
    }
  });

  test('loads the board through Pushpin and shows its top players', { timeout: 20_000 }, async () => {
    const response = await page.goto(`${BASE}/boards/${boardId}/`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-type'], /^text\/html/);
    assert.match(response.headers()['content-security-policy'], /script-src 'self'/);

    await page.waitForFunction(() => document.querySelectorAll('#players > li').length === 3);
    assert.equal(await page.textContent('h1'), 'E2E board');
    // The board's rules, in words; the defaults here.
    assert.equal(await page.textContent('#board-rules'), 'Higher is better · points add up · top 5');
    // This board does not reset: no countdown, no periods.
    assert.equal(await page.isHidden('#reset-line'), true);
    assert.equal(await page.isHidden('#periods'), true);
    assert.deepEqual(
      (await rows(page)).map(({ name, score, rank }) => ({ name, score, rank })),
      [
        { name: 'Ann', score: 5, rank: 1 },
        { name: 'Ben', score: 3, rank: 2 },
        { name: 'Cy', score: 1, rank: 3 },
      ],
    );
    assert.equal(await page.inputValue('#board-select'), boardId);
  });

  test('shows the connection as live', { timeout: 10_000 }, async () => {
    await waitForStatus(page, 'live');
    assert.equal((await page.textContent('#connection')).trim(), 'Live');
  });

  test("shows another client's score-add within 2 s", { timeout: 10_000 }, async () => {
    const cy = `${boardId}-cy`;
    const started = Date.now();
    const answer = await api('POST', `/boards/${boardId}/players/${cy}/score-add/`, { value: 10 });
    assert.equal(answer.score, 11);
    await waitForScore(page, cy, 11, 2000 - (Date.now() - started));
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    // Cy overtook both others.
    assert.deepEqual((await rows(page)).map((r) => r.name), ['Cy', 'Ann', 'Ben']);
  });

  test('+1 raises the score at once and on the server, by mouse and by keyboard', { timeout: 15_000 }, async () => {
    const ben = `${boardId}-ben`;
    const button = page.locator(`#players > li[data-id="${ben}"] button.plus`);
    assert.equal(await button.getAttribute('type'), 'button');
    assert.match(await button.textContent(), /^\+1 point for Ben$/);

    await button.click();
    // Optimistic: shown before any stream event could have come back.
    await waitForScore(page, ben, 4, 500);
    await eventuallyBoard(boardId, (b) => b.players.find((p) => p.id === ben)?.score === 4);

    // The button keeps focus, so Enter gives another point.
    await button.focus();
    await page.keyboard.press('Enter');
    await waitForScore(page, ben, 5, 500);
    await eventuallyBoard(boardId, (b) => b.players.find((p) => p.id === ben)?.score === 5);
    assert.equal(await page.evaluate(() => document.activeElement.className), 'plus');

    // Reconciled with the stream, the page still agrees with the server.
    await page.waitForTimeout(300);
    await waitForScore(page, ben, 5, 2000);
    await page.screenshot({ path: join(ARTIFACTS, 'board-desktop.png'), fullPage: true });
  });

  test('rolls back a +1 that fails, and says why', { timeout: 10_000 }, async () => {
    const ann = `${boardId}-ann`;
    const before = (await rows(page)).find((r) => r.id === ann).score;
    // This one POST meets a database outage: the answer comes late, and is 503.
    await page.route('**/score-add/', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 400));
      await route.fulfill({
        status: 503,
        contentType: 'application/json',
        body: JSON.stringify({ error: 'database_unavailable', message: 'the database is unavailable; try again shortly' }),
      });
    }, { times: 1 });
    await page.locator(`#players > li[data-id="${ann}"] button.plus`).click();
    await waitForScore(page, ann, before + 1, 300);
    await waitForScore(page, ann, before, 2000);
    await page.waitForSelector('#notice:not([hidden])');
    assert.match(await page.textContent('#notice-text'), /Could not add a point for Ann: the database is unavailable/);
    assert.equal((await api('GET', `/boards/${boardId}/`)).players.find((p) => p.id === ann).score, before);
    await page.click('#notice-close');
    assert.equal(await page.isHidden('#notice'), true);
  });

  test('find me: a player with its neighbours and ranks, followed live', { timeout: 20_000 }, async () => {
    const names = ['Ann', 'Ben', 'Cy', 'Dee', 'Eve', 'Fay', 'Gus'];
    await makeBoard(findBoardId, 'Find me', { top: 3 },
      names.map((name, i) => [name.toLowerCase(), name, 70 - 10 * i]));
    await page.goto(`${BASE}/boards/${findBoardId}/`);
    await waitForNames(page, ['Ann', 'Ben', 'Cy']);
    await waitForStatus(page, 'live');
    assert.equal(await page.isHidden('#around-me'), true);

    // A name works as well as an id, in any case, once the list is known.
    await page.waitForFunction(() => document.querySelectorAll('#player-options option').length === 7);
    await page.fill('#me-player', 'eve');
    await page.press('#me-player', 'Enter');
    await waitForNames(page, ['Cy', 'Dee', 'Eve', 'Fay', 'Gus'], '#around');
    assert.deepEqual(
      (await rows(page, '#around')).map(({ rank, name, score }) => `${rank}:${name}:${score}`),
      ['3:Cy:50', '4:Dee:40', '5:Eve:30', '6:Fay:20', '7:Gus:10'],
    );
    await page.waitForFunction(() => document.querySelector('#me-summary').textContent === 'Eve is 5th of 7, with 30 points.');
    const current = await page.$$eval('#around > li[aria-current="true"]', (lis) => lis.map((li) => li.dataset.id));
    assert.deepEqual(current, [`${findBoardId}-eve`]);

    // Another client moves Eve to the top: the stream's update brings the
    // new neighbourhood, and the board marks her row too.
    const started = Date.now();
    await api('POST', `/boards/${findBoardId}/players/${findBoardId}-eve/score-add/`, { value: 100 });
    await waitForNames(page, ['Eve', 'Ann', 'Ben'], '#around', 3000);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
    assert.deepEqual(
      (await rows(page, '#around')).map(({ rank, name, score }) => `${rank}:${name}:${score}`),
      ['1:Eve:130', '2:Ann:70', '3:Ben:60'],
    );
    await page.waitForFunction(() => document.querySelector('#me-summary').textContent === 'Eve is 1st of 7, with 130 points.');
    await page.waitForSelector(`#players > li.me[data-id="${findBoardId}-eve"]`);

    // Remembered for this board across a reload.
    await page.reload();
    await waitForNames(page, ['Eve', 'Ann', 'Ben'], '#around', 5000);
    await page.screenshot({ path: join(ARTIFACTS, 'find-me-desktop.png'), fullPage: true });

    await page.click('#me-forget');
    assert.equal(await page.isHidden('#around-me'), true);
    assert.equal(await page.locator('#players > li.me').count(), 0);
  });

  test('go to rank: ten players from any rank, and a rank past the end', { timeout: 45_000 }, async () => {
    const id = uniqueId('jump');
    // 40 players, scores 400, 390, ..., 10: player k is at rank k + 1.
    const players = Array.from({ length: 40 }, (_, k) => [`p${k}`, `P${k}`, 400 - 10 * k]);
    await makeBoard(id, 'Jump', {}, players);
    await page.goto(`${BASE}/boards/${id}/`);
    await waitForNames(page, ['P0', 'P1', 'P2', 'P3', 'P4']);
    await page.fill('#jump-rank', '23');
    await page.press('#jump-rank', 'Enter');
    await page.waitForSelector('#rank-view:not([hidden])');
    await page.waitForFunction(() => document.querySelectorAll('#rank-page > li').length === 10);
    assert.deepEqual(
      (await rows(page, '#rank-page')).map(({ rank, name, score }) => `${rank}:${name}:${score}`),
      Array.from({ length: 10 }, (_, i) => `${23 + i}:P${22 + i}:${400 - 10 * (22 + i)}`),
    );
    // "of N" comes from the board's rank digest, which can lag the writes
    // for a moment (docs/scaling.md, "Ranks at any depth"); once the board has been
    // quiet it counts every player.
    assert.match(await page.textContent('#rank-summary'), /^Ranks 23–32 of \d+\.$/);
    const counted = await eventually(async () => {
      const answer = await api('GET', `/boards/${id}/players/?rank=23&limit=10`);
      return answer.out_of === 40 && answer;
    }, 15_000);
    assert.deepEqual(counted.players.map((p) => p.rank), Array.from({ length: 10 }, (_, i) => 23 + i));
    await page.fill('#jump-rank', '23');
    await page.press('#jump-rank', 'Enter');
    await page.waitForFunction(() => document.querySelector('#rank-summary').textContent === 'Ranks 23–32 of 40.');
    await page.screenshot({ path: join(ARTIFACTS, 'go-to-rank-desktop.png'), fullPage: true });

    await page.fill('#jump-rank', '41');
    await page.press('#jump-rank', 'Enter');
    await page.waitForFunction(() => document.querySelector('#rank-summary').textContent.startsWith('There is no rank 41'));
    assert.equal(await page.locator('#rank-page > li').count(), 0);

    await page.fill('#jump-rank', '0');
    await page.press('#jump-rank', 'Enter');
    assert.equal(await page.textContent('#jump-rank-error'), 'A rank is a whole number from 1.');
  });

  test('a lower-is-better board of best results: order, ranks, rules and the score form', { timeout: 20_000 }, async () => {
    await makeBoard(lapsId, 'Lap times', { order: 'asc', operator: 'best', top: 10 },
      [['ann', 'Ann', 6512], ['ben', 'Ben', 6400], ['cy', 'Cy', 7000], ['dot', 'Dot']], 'score');
    await page.goto(`${BASE}/boards/${lapsId}/`);
    await waitForNames(page, ['Ben', 'Ann', 'Cy']);
    await waitForStatus(page, 'live');
    assert.equal(await page.textContent('#board-rules'), 'Lower is better · best result kept · top 10');
    assert.deepEqual(
      (await rows(page)).map(({ rank, name, score }) => `${rank}:${name}:${score}`),
      ['1:Ben:6400', '2:Ann:6512', '3:Cy:7000'],
    );
    // "+1" means nothing here: results go through the form.
    assert.equal(await page.locator('#players button.plus').first().isVisible(), false);
    assert.match(await page.textContent('#score-value-hint'), /beats the player’s best \(lower is better\)/);

    // A faster lap for Cy: shown at once, first place, and on the server.
    await page.waitForFunction(() => document.querySelectorAll('#player-options option').length >= 3);
    await page.fill('#score-player', 'Cy');
    await page.fill('#score-value', '6300');
    await page.press('#score-value', 'Enter');
    await waitForNames(page, ['Cy', 'Ben', 'Ann'], '#players', 500);
    assert.equal((await rows(page))[0].rank, 1);
    await page.waitForSelector('#submit-score .form-status:has-text("New best for Cy: 6,300.")');
    const board = await eventuallyBoard(lapsId, (b) => b.players[0].id === `${lapsId}-cy`);
    assert.deepEqual(board.players[0], { id: `${lapsId}-cy`, name: 'Cy', score: 6300, rank: 1 });

    // A slower one is not an improvement: nothing moves, and the page says so.
    await page.fill('#score-player', 'Cy');
    await page.fill('#score-value', '6999');
    await page.press('#score-value', 'Enter');
    await page.waitForSelector('#submit-score .form-status:has-text("6,999 does not beat Cy’s best, 6,300; nothing changed.")');
    await waitForScore(page, `${lapsId}-cy`, 6300, 1000);
    assert.deepEqual((await rows(page)).map((r) => r.name), ['Cy', 'Ben', 'Ann']);

    // Dot has no result yet: not on the board, and "find me" says so.
    await page.fill('#me-player', `${lapsId}-dot`);
    await page.press('#me-player', 'Enter');
    await page.waitForSelector('#me-summary:has-text("Dot has no score yet.")');
    assert.deepEqual(
      await page.$$eval('#around > li', (lis) => lis.map((li) => li.textContent)),
      ['–Dot— no score yet'],
    );
    // Her first lap is the form's default player now, and puts her on the board.
    assert.equal(await page.inputValue('#score-player'), `${lapsId}-dot`);
    await page.fill('#score-value', '6450');
    await page.press('#score-value', 'Enter');
    await waitForNames(page, ['Cy', 'Ben', 'Dot', 'Ann'], '#players', 3000);
    await page.waitForSelector('#me-summary:has-text("Dot is 3rd of 4, with a score of 6,450.")');
    assert.deepEqual(
      (await rows(page, '#around')).map(({ rank, name }) => `${rank}:${name}`),
      ['1:Cy', '2:Ben', '3:Dot', '4:Ann'],
    );
    await page.screenshot({ path: join(ARTIFACTS, 'board-asc-desktop.png'), fullPage: true });
    await page.click('#me-forget');
  });

  test('"+1" on a lower-is-better board is a step back, shown as one', { timeout: 15_000 }, async () => {
    await makeBoard(golfId, 'Strokes', { order: 'asc' }, [['ann', 'Ann', 3], ['ben', 'Ben', 4]]);
    await page.goto(`${BASE}/boards/${golfId}/`);
    await waitForNames(page, ['Ann', 'Ben']);
    await waitForStatus(page, 'live');
    assert.equal(await page.textContent('#board-rules'), 'Lower is better · points add up · top 5');
    const ann = `${golfId}-ann`;
    const button = page.locator(`#players > li[data-id="${ann}"] button.plus`);

    // Record every flash Ann's row gets: a snapshot that counts the click
    // before its POST answers shows it twice for a moment (as the model
    // says), and the correction back flashes too, so the row's class at any
    // later moment says nothing; the click's own flash comes first.
    await page.evaluate((id) => {
      window.flashes = [];
      const li = document.querySelector(`#players > li[data-id="${id}"]`);
      new MutationObserver(() => {
        for (const c of ['better', 'worse']) {
          if (li.classList.contains(c)) window.flashes.push(c);
        }
      }).observe(li, { attributes: true, attributeFilter: ['class'] });
    }, ann);
    await button.click();
    await waitForScore(page, ann, 4, 500);
    // Level with Ben: equal scores go by id, ascending on this board.
    await eventuallyBoard(golfId, (b) => b.players.find((p) => p.id === ann)?.score === 4);
    await waitForRows(page, ['1:Ann:4', '2:Ben:4']);
    const flashes = await page.evaluate(() => window.flashes);
    assert.equal(flashes[0], 'worse', `flashes: ${flashes}`);

    await button.click();
    await waitForScore(page, ann, 5, 500);
    await waitForNames(page, ['Ben', 'Ann'], '#players', 500);
    assert.deepEqual((await rows(page)).map((r) => r.rank), [1, 2]);
    await eventuallyBoard(golfId, (b) => b.players.map((p) => `${p.rank}:${p.id}:${p.score}`).join()
      === `1:${golfId}-ben:4,2:${ann}:5`);
    // Reconciled with the stream, the page agrees.
    await waitForRows(page, ['1:Ben:4', '2:Ann:5']);
  });

  test('creates a board and a player with the forms', { timeout: 20_000 }, async () => {
    created.push(formBoardId);
    await page.fill('#board-name', 'Made in the browser');
    await page.fill('#board-id', formBoardId);
    await page.click('#new-board button[type="submit"]');

    await page.waitForFunction((id) => window.location.pathname === `/boards/${id}/`, formBoardId);
    await page.waitForFunction(() => document.querySelector('h1').textContent === 'Made in the browser');
    await waitForStatus(page, 'live');
    assert.equal(await page.inputValue('#board-select'), formBoardId);
    const board = await api('GET', `/boards/${formBoardId}/`);
    assert.deepEqual(board, {
      id: formBoardId,
      name: 'Made in the browser',
      rules: { order: 'desc', operator: 'incr', top: 5 },
      players: [],
    });

    await page.fill('#player-name', 'Zoë');
    await page.press('#player-name', 'Enter');
    await page.waitForFunction(() => {
      const names = [...document.querySelectorAll('#players .name')].map((n) => n.textContent);
      return names.length === 1 && names[0] === 'Zoë';
    }, null, { timeout: 3000 });
    const [zoe] = (await api('GET', `/boards/${formBoardId}/`)).players;
    assert.deepEqual({ name: zoe.name, score: zoe.score }, { name: 'Zoë', score: 0 });
    assert.equal(await page.inputValue('#player-name'), '', 'the form is cleared');

    // A form error is shown on its field, not in a dialog.
    await page.fill('#board-name', 'Again');
    await page.fill('#board-id', formBoardId);
    await page.click('#new-board button[type="submit"]');
    await page.waitForSelector('#board-id-error:not([hidden])');
    assert.equal(await page.getAttribute('#board-id', 'aria-invalid'), 'true');
    await page.fill('#board-id', '');
    await page.fill('#board-name', '');
  });

  test('the board form sets the rules: order, operator and top', { timeout: 20_000 }, async () => {
    created.push(rulesBoardId);
    await page.fill('#board-name', 'Fastest five');
    await page.fill('#board-id', rulesBoardId);
    await page.selectOption('#board-order', 'asc');
    await page.selectOption('#board-operator', 'set');
    // Out of range is refused on the field, before anything is sent.
    await page.fill('#board-top', '101');
    await page.click('#new-board button[type="submit"]');
    await page.waitForSelector('#board-top-error:not([hidden])');
    assert.equal(await page.getAttribute('#board-top', 'aria-invalid'), 'true');
    await page.fill('#board-top', '7');
    await page.click('#new-board button[type="submit"]');

    await page.waitForFunction((id) => window.location.pathname === `/boards/${id}/`, rulesBoardId);
    await waitForStatus(page, 'live');
    const board = await api('GET', `/boards/${rulesBoardId}/`);
    assert.deepEqual(
      { rules: { order: board.rules.order, operator: board.rules.operator, top: board.rules.top }, players: board.players },
      { rules: { order: 'asc', operator: 'set', top: 7 }, players: [] },
    );
    await page.waitForFunction(() => document.getElementById('board-rules').textContent
      === 'Lower is better · latest score counts · top 7');
    // The form is back to the defaults for the next board.
    assert.equal(await page.inputValue('#board-order'), 'desc');
    assert.equal(await page.inputValue('#board-operator'), 'incr');
    assert.equal(await page.inputValue('#board-top'), '5');

    // A new player on a set board has no score, so it is not on the board
    // until a score is submitted: the score form is ready for it.
    await page.fill('#player-name', 'Quick');
    await page.press('#player-name', 'Enter');
    await page.waitForSelector('#new-player .form-status:has-text("Added Quick.")');
    assert.equal(await page.locator('#players > li').count(), 0);
    assert.notEqual(await page.inputValue('#score-player'), '');
    await page.fill('#score-value', '42');
    await page.press('#score-value', 'Enter');
    await waitForNames(page, ['Quick'], '#players', 3000);
    await page.waitForSelector('#submit-score .form-status:has-text("Quick’s score is now 42.")');
    assert.equal(await page.locator('#players button.plus').first().isVisible(), false);
    const [quick] = (await api('GET', `/boards/${rulesBoardId}/`)).players;
    assert.deepEqual({ name: quick.name, score: quick.score, rank: quick.rank }, { name: 'Quick', score: 42, rank: 1 });
  });

  test('the board form sets a reset schedule, and shows the server’s word on a bad cron expression', { timeout: 20_000 }, async () => {
    created.push(cronBoardId, weeklyBoardId);
    // Never, by default: the cron field only appears for a custom schedule.
    assert.equal(await page.inputValue('#board-reset'), '');
    assert.equal(await page.isHidden('#board-cron'), true);
    await page.fill('#board-name', 'Mornings');
    await page.fill('#board-id', cronBoardId);
    await page.selectOption('#board-reset', 'cron');
    await page.waitForSelector('#board-cron', { state: 'visible' });
    assert.equal(await page.getAttribute('#board-reset', 'aria-describedby'), 'board-reset-hint');

    // Empty: refused on the field before anything is sent.
    await page.click('#new-board button[type="submit"]');
    await page.waitForSelector('#board-cron-error:not([hidden])');
    assert.equal(await page.textContent('#board-cron-error'), 'Enter a cron expression, such as “0 6 * * 1”.');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'board-cron');

    // Not a schedule: the server's 400 message, on the field.
    const refused = await apiAnswer('POST', '/boards/', { name: 'Mornings', reset: '61 * * * *' });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, 'invalid_input');
    await page.fill('#board-cron', '61 * * * *');
    assert.equal(await page.isHidden('#board-cron-error'), true, 'editing clears the error');
    await page.click('#new-board button[type="submit"]');
    await page.waitForFunction((want) => {
      const error = document.getElementById('board-cron-error');
      return !error.hidden && error.textContent === want;
    }, refused.body.message, { timeout: 5000 });
    assert.equal(await page.getAttribute('#board-cron', 'aria-invalid'), 'true');
    assert.equal((await apiAnswer('GET', `/boards/${cronBoardId}/`)).status, 404);

    // A good one: the board resets on it, and the page counts down to it.
    await page.fill('#board-cron', ' 0 6 * * 1 ');
    await page.click('#new-board button[type="submit"]');
    await page.waitForFunction((id) => window.location.pathname === `/boards/${id}/`, cronBoardId);
    await waitForStatus(page, 'live');
    const board = await api('GET', `/boards/${cronBoardId}/`);
    assert.deepEqual(board.rules, { order: 'desc', operator: 'incr', top: 5, reset: '0 6 * * 1' });
    assert.equal(board.period.number, 1);
    assert.match(board.next_reset, /T06:00:00\.000Z$/);
    assert.equal(new Date(board.next_reset).getUTCDay(), 1);
    await page.waitForFunction(() => document.getElementById('board-rules').textContent
      === 'Higher is better · points add up · top 5 · resets on the schedule “0 6 * * 1” (UTC)');
    await page.waitForFunction((at) => document.getElementById('reset-time').dateTime === at, board.next_reset);
    assert.equal(await page.isVisible('#reset-line'), true);
    // Back to "never" for the next board, with the cron field hidden.
    assert.equal(await page.inputValue('#board-reset'), '');
    assert.equal(await page.isHidden('#board-cron'), true);

    // A named schedule.
    await page.fill('#board-name', 'Weekly');
    await page.fill('#board-id', weeklyBoardId);
    await page.selectOption('#board-reset', 'weekly');
    assert.equal(await page.isHidden('#board-cron'), true);
    await page.click('#new-board button[type="submit"]');
    await page.waitForFunction((id) => window.location.pathname === `/boards/${id}/`, weeklyBoardId);
    const weekly = await api('GET', `/boards/${weeklyBoardId}/`);
    assert.equal(weekly.rules.reset, 'weekly');
    assert.match(weekly.next_reset, /T00:00:00\.000Z$/);
    assert.equal(new Date(weekly.next_reset).getUTCDay(), 1);
    await page.waitForFunction(() => document.getElementById('board-rules').textContent
      === 'Higher is better · points add up · top 5 · resets weekly');
  });

  test('switches boards with the board list', { timeout: 10_000 }, async () => {
    await page.selectOption('#board-select', boardId);
    await page.waitForFunction(() => document.querySelector('h1').textContent === 'E2E board');
    await page.waitForFunction(() => document.querySelectorAll('#players > li').length === 3);
    assert.equal(new URL(page.url()).pathname, `/boards/${boardId}/`);
    await waitForStatus(page, 'live');
  });

  test('fits a phone: one column, large tap targets', { timeout: 10_000 }, async () => {
    await page.setViewportSize(PHONE);
    await page.emulateMedia({ reducedMotion: 'reduce' });
    // With "find me" and the board form's cron field open too.
    await page.selectOption('#board-reset', 'cron');
    await page.waitForSelector('#board-cron', { state: 'visible' });
    await page.fill('#me-player', 'Ben');
    await page.press('#me-player', 'Enter');
    await page.waitForSelector('#around > li[aria-current="true"]');
    await page.waitForTimeout(100);
    const noSideScroll = await page.evaluate(
      () => document.documentElement.scrollWidth <= window.innerWidth,
    );
    assert.ok(noSideScroll, 'the page scrolls sideways');
    for (const box of await page.locator('#players button.plus').evaluateAll((buttons) =>
      buttons.map((b) => b.getBoundingClientRect().toJSON()))) {
      assert.ok(box.width >= 44 && box.height >= 44, `tap target ${box.width}x${box.height}`);
    }
    // Points still arrive with motion reduced.
    await page.locator(`#players > li[data-id="${boardId}-ann"] button.plus`).click();
    await waitForScore(page, `${boardId}-ann`, 6, 500);
    await page.screenshot({ path: join(ARTIFACTS, 'board-phone.png'), fullPage: true });
    await page.click('#me-forget');
    await page.selectOption('#board-reset', '');
    await page.setViewportSize(DESKTOP);
    await page.emulateMedia({ reducedMotion: null });
  });

  test('says so when the board is deleted', { timeout: 10_000 }, async () => {
    // The page reads the board's players once it has the board: a delete
    // before that answers would fail that read, a console error.
    const players = page.waitForResponse((r) => new URL(r.url()).pathname === `/boards/${formBoardId}/players/`);
    await page.selectOption('#board-select', formBoardId);
    await waitForStatus(page, 'live');
    await players;
    await api('DELETE', `/boards/${formBoardId}/`);
    await page.waitForSelector('#board-message:has-text("deleted")', { timeout: 3000 });
    assert.equal(await page.getAttribute('#connection', 'data-state'), 'offline');
  });

  // A board on a cron schedule with seconds resets every four seconds, on
  // the real server: its first period may end at once, so the scores go in
  // at the start of a later one, whose number is then known.
  test('a board that resets: countdown, the new period, its finished periods, back to live', { timeout: 60_000 }, async () => {
    created.push(resetBoardId);
    const id = resetBoardId;
    await makeBoard(id, 'Every four seconds', { reset: '*/4 * * * * *' }, [['ann', 'Ann'], ['ben', 'Ben'], ['cy', 'Cy']]);
    await page.goto(`${BASE}/boards/${id}/`);
    await waitForStatus(page, 'live');
    await page.waitForFunction(() => document.querySelectorAll('#players > li').length === 3);
    assert.equal(await page.textContent('#board-rules'),
      'Higher is better · points add up · top 5 · resets on the schedule “*/4 * * * * *” (UTC)');
    // Everything the screen reader is told, in order, from here on.
    await page.evaluate(() => {
      const region = document.getElementById('announcer');
      window.announced = [];
      new MutationObserver(() => window.announced.push(region.textContent))
        .observe(region, { childList: true, characterData: true, subtree: true });
    });

    // The countdown: the seconds left to the board's `next_reset`, ticking.
    const shown = await countdown(page);
    assert.match(shown.text, /^[1-4] s$/);
    const left = Date.parse(shown.at) - Date.now();
    assert.ok(left <= 4000 && Number.parseInt(shown.text, 10) >= Math.ceil(left / 1000),
      `shows ${shown.text} with ${left} ms left`);
    await page.waitForFunction((was) => {
      const time = document.getElementById('reset-time');
      return time.textContent !== was.text || time.dateTime !== was.at;
    }, shown, { timeout: 3000 });

    // Scores, given just after a reset: the period they count in is known.
    let scored = null;
    let seen = (await api('GET', `/boards/${id}/`)).period.number;
    for (let attempt = 1; !scored; attempt += 1) {
      const board = await nextPeriod(id, seen);
      for (const [pid, value] of [['ann', 5], ['ben', 3], ['cy', 1]]) {
        await api('POST', `/boards/${id}/players/${id}-${pid}/score-add/`, { value });
      }
      // With too little of the period left to see them on the page, the
      // next period is tried; its scores start from 0 again.
      if (Date.now() < Date.parse(board.next_reset) - 1500) scored = board;
      else assert.ok(attempt < 4, `the scores never went in early enough in a period (${attempt} tries)`);
      seen = board.period.number;
    }
    // They stay on the page until the new period's first update, which
    // comes at least RESET_SETTLE (0.5 s) after the end.
    const number = scored.period.number;
    const shownUntil = Date.parse(scored.next_reset) + 500;
    await waitForRows(page, ['1:Ann:5', '2:Ben:3', '3:Cy:1'], '#players', shownUntil - Date.now());
    await page.waitForFunction(([at, label]) => document.getElementById('reset-time').dateTime === at
      && document.querySelector('#period-select option[value="live"]')?.textContent === label,
    [scored.next_reset, `Live · period ${number}`], { timeout: Math.max(100, shownUntil - Date.now()) });

    // The reset: a new period, the points back to 0 (equal scores go by id),
    // the countdown to the next reset, and the reset read out.
    await waitForRows(page, ['1:Cy:0', '2:Ben:0', '3:Ann:0'], '#players', 10_000);
    const next = await nextPeriod(id, number, 1000);
    assert.ok(Date.parse(next.next_reset) > Date.parse(scored.next_reset));
    await page.waitForFunction((was) => Date.parse(document.getElementById('reset-time').dateTime) > Date.parse(was),
      scored.next_reset, { timeout: 5000 });
    await page.waitForFunction((n) => {
      const label = document.querySelector('#period-select option[value="live"]')?.textContent ?? '';
      return Number(/^Live · period (\d+)$/.exec(label)?.[1]) > n;
    }, number, { timeout: 5000 });
    const words = `Period ${number} has ended; the board starts again.`;
    await page.waitForFunction((want) => window.announced.some((text) => text.endsWith(want)), words, { timeout: 5000 })
      .catch(async () => assert.fail(`never announced “${words}”: ${JSON.stringify(await page.evaluate(() => window.announced))}`));
    // Everyone's place changed with the scores; that is the reset, not news.
    const announced = await page.evaluate(() => window.announced);
    assert.ok(!announced.some((text) => text.includes('Cy moved up')), JSON.stringify(announced));

    // The finished period in the switcher, its standings as the API keeps them.
    const archived = await api('GET', `/boards/${id}/periods/${number}/`);
    assert.deepEqual(
      { players: archived.players, start: archived.start, end: archived.end, top: archived.top },
      {
        players: 3,
        start: scored.period.start,
        end: scored.next_reset,
        top: [['ann', 'Ann', 5], ['ben', 'Ben', 3], ['cy', 'Cy', 1]]
          .map(([pid, name, score], i) => ({ id: `${id}-${pid}`, name, score, rank: i + 1 })),
      },
    );
    await page.waitForSelector(`#period-select option[value="${number}"]`, { state: 'attached' });
    assert.match(await page.textContent(`#period-select option[value="${number}"]`), new RegExp(`^Period ${number} · .+ – .+$`));
    await page.selectOption('#period-select', String(number));
    await page.waitForSelector('#period-view:not([hidden])');
    assert.equal(await page.isHidden('#live-view'), true);
    const ended = await page.evaluate((end) => new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })
      .format(new Date(end)), archived.end);
    assert.equal(await page.textContent('#period-summary'), `Final standings of period ${number} · ended ${ended} · 3 players`);
    assert.deepEqual(await rows(page, '#period-players'), archived.top.map(({ id: pid, name, score, rank }) => ({ id: pid, rank, name, score })));
    assert.equal(await page.locator('#period-players button').count(), 0);
    assert.equal(await page.isHidden('#period-message'), true);
    await page.screenshot({ path: join(ARTIFACTS, 'period-desktop.png'), fullPage: true });

    // The board goes on resetting meanwhile; the finished period stays shown.
    const live = await page.textContent('#period-select option[value="live"]');
    await page.waitForFunction((was) => document.querySelector('#period-select option[value="live"]').textContent !== was,
      live, { timeout: 10_000 });
    assert.equal(await page.inputValue('#period-select'), String(number));
    assert.equal(await page.isVisible('#period-view'), true);
    assert.equal((await rows(page, '#period-players')).length, 3);

    // Back to live: the board again, and the switcher says so.
    await page.click('#period-back');
    await page.waitForSelector('#period-view', { state: 'hidden' });
    assert.equal(await page.isVisible('#live-view'), true);
    assert.equal(await page.inputValue('#period-select'), 'live');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'period-select');
    await waitForRows(page, ['1:Cy:0', '2:Ben:0', '3:Ann:0']);

    // Deleted, it stops resetting, and the page says it is gone. The page
    // reads the periods once per period: right after that read has changed
    // the switcher, a delete fails none of the page's reads.
    const label = await page.textContent('#period-select option[value="live"]');
    await page.waitForFunction((was) => document.querySelector('#period-select option[value="live"]').textContent !== was,
      label, { timeout: 10_000 });
    await api('DELETE', `/boards/${id}/`);
    await page.waitForSelector('#board-message:has-text("deleted")', { timeout: 5000 });
    assert.equal(await page.isHidden('#reset-line'), true);
    assert.equal(await page.isHidden('#periods'), true);
  });

  // Pushpin, in the moments after it starts, can take a request and never
  // answer it; the browser would wait on such a stream for good. Here the
  // page's first stream is held unanswered, as that Pushpin would.
  test('drops a stream that is never answered, and opens another', { timeout: 30_000 }, async () => {
    const id = uniqueId('e2e-unanswered');
    created.push(id);
    await makeBoard(id, 'Unanswered', {}, [['ann', 'Ann', 2]]);
    const other = await context.newPage();
    const streams = { held: 0, passed: 0 };
    try {
      await other.route(
        (url) => url.pathname === `/boards/${id}/`,
        (route) => {
          if (!(route.request().headers().accept || '').includes('text/event-stream')) return route.continue();
          if (streams.held === 0) {
            streams.held += 1;
            return undefined; // never answered
          }
          streams.passed += 1;
          return route.continue();
        },
      );
      const opened = Date.now();
      await other.goto(`${BASE}/boards/${id}/`);
      await other.waitForTimeout(1000);
      assert.equal(await other.getAttribute('#connection', 'data-state'), 'connecting');
      await waitForStatus(other, 'live', 20_000);
      const waited = Date.now() - opened;
      assert.deepEqual(streams, { held: 1, passed: 1 });
      // The page gave up after its 10 s, not before.
      assert.ok(waited >= 10_000, `live after ${waited} ms`);
      // The new stream brings the board, and what changes on it.
      await waitForRows(other, ['1:Ann:2']);
      await api('POST', `/boards/${id}/players/${id}-ann/score-add/`, { value: 5 });
      await waitForScore(other, `${id}-ann`, 7, 3000);
    } finally {
      await other.close();
    }
  });

  test('ran without console errors or CSP refusals', () => {
    assert.deepEqual(problems, []);
  });

  test('explains an unknown board', { timeout: 10_000 }, async () => {
    const other = await context.newPage();
    try {
      await other.goto(`${BASE}/boards/${uniqueId('missing')}/`);
      await other.waitForSelector('#board-message:has-text("There is no board")', { timeout: 5000 });
      assert.equal(await other.getAttribute('#connection', 'data-state'), 'offline');
    } finally {
      await other.close();
    }
  });
});
