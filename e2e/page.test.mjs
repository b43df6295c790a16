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
      // 503 the outage the rollback test stages.
      const expected = /^Failed to load resource: .* (409 \(Conflict\)|503 \(Service Unavailable\))$/;
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
    assert.equal(await page.textContent('#me-summary'), 'Eve is 5th, with 30 points.');
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
    assert.equal(await page.textContent('#me-summary'), 'Eve is 1st, with 130 points.');
    await page.waitForSelector(`#players > li.me[data-id="${findBoardId}-eve"]`);

    // Remembered for this board across a reload.
    await page.reload();
    await waitForNames(page, ['Eve', 'Ann', 'Ben'], '#around', 5000);
    await page.screenshot({ path: join(ARTIFACTS, 'find-me-desktop.png'), fullPage: true });

    await page.click('#me-forget');
    assert.equal(await page.isHidden('#around-me'), true);
    assert.equal(await page.locator('#players > li.me').count(), 0);
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
    await page.waitForSelector('#me-summary:has-text("Dot is 3rd, with a score of 6,450.")');
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

    await button.click();
    await waitForScore(page, ann, 4, 500);
    // Level with Ben: equal scores go by id, ascending on this board. (A
    // snapshot that counts the click before its POST answers shows it twice
    // for a moment, as the model says; hence a wait, not a look.)
    await eventuallyBoard(golfId, (b) => b.players.find((p) => p.id === ann)?.score === 4);
    await waitForRows(page, ['1:Ann:4', '2:Ben:4']);
    const classes = await page.getAttribute(`#players > li[data-id="${ann}"]`, 'class');
    assert.match(classes, /\bworse\b/);
    assert.doesNotMatch(classes, /\bbetter\b/);

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
    // With "find me" open too.
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
    await page.setViewportSize(DESKTOP);
    await page.emulateMedia({ reducedMotion: null });
  });

  test('says so when the board is deleted', { timeout: 10_000 }, async () => {
    await page.selectOption('#board-select', formBoardId);
    await waitForStatus(page, 'live');
    await api('DELETE', `/boards/${formBoardId}/`);
    await page.waitForSelector('#board-message:has-text("deleted")', { timeout: 3000 });
    assert.equal(await page.getAttribute('#connection', 'data-state'), 'offline');
  });

  test('ran without console errors or CSP refusals', () => {
    assert.deepEqual(problems, []);
  });

  // Resets and periods are announced but not served yet: here the server's
  // answers are stood in for by the shapes announced (board `period` and
  // `next_reset`, `GET .../periods/`, the stream's `reset` event), so the
  // page's side can be checked today.
  test('a board that resets: countdown, finished periods, back to live (server answers stood in)', { timeout: 15_000 }, async () => {
    const id = uniqueId('e2e-periods');
    const hour = 3600_000;
    const now = Date.now();
    const iso = (ms) => new Date(ms).toISOString();
    const nextReset = iso(now + 90_000);
    const player = (pid, name, score, rank) => ({ id: `${id}-${pid}`, name, score, rank });
    const rules = { order: 'desc', operator: 'incr', top: 5, reset: 'daily' };
    const snapshot = (number, players) => ({
      id, name: 'Daily', rules, period: { number, start: iso(now - hour) }, next_reset: nextReset, players,
    });
    const second = {
      number: 2, start: iso(now - 25 * hour), end: iso(now - hour), players: 12,
      top: [player('ann', 'Ann', 40, 1), player('ben', 'Ben', 30, 2)],
    };
    const first = { number: 1, start: iso(now - 49 * hour), end: iso(now - 25 * hour), players: 0, top: [] };
    const sse = [
      'retry: 600000\n\n',
      `id: v1\nevent: update\ndata: ${JSON.stringify(snapshot(2, [player('ann', 'Ann', 40, 1), player('ben', 'Ben', 30, 2)]))}\n\n`,
      `id: v2\nevent: reset\ndata: ${JSON.stringify(second)}\n\n`,
      `id: v3\nevent: update\ndata: ${JSON.stringify(snapshot(3, [player('cy', 'Cy', 2, 1)]))}\n\n`,
    ].join('');

    const other = await context.newPage();
    const errors = [];
    other.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });
    other.on('pageerror', (err) => errors.push(err.message));
    const json = (body) => ({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
    await other.route((url) => url.pathname.startsWith(`/boards/${id}/`), async (route, request) => {
      const path = new URL(request.url()).pathname;
      if (path === `/boards/${id}/` && (request.headers().accept ?? '').includes('text/event-stream')) {
        await route.fulfill({ status: 200, headers: { 'Content-Type': 'text/event-stream' }, body: sse });
      } else if (path === `/boards/${id}/periods/`) {
        await route.fulfill(json({ periods: [second, first] }));
      } else if (path === `/boards/${id}/players/`) {
        await route.fulfill(json({ players: [player('cy', 'Cy', 2, 1)], next_cursor: null }));
      } else {
        await route.continue(); // the page itself
      }
    });
    try {
      await other.goto(`${BASE}/boards/${id}/`);
      await waitForNames(other, ['Cy'], '#players', 5000);
      assert.equal(await other.textContent('#board-rules'), 'Higher is better · points add up · top 5 · resets daily');

      // The countdown, ticking.
      await other.waitForSelector('#reset-line:not([hidden])');
      assert.equal(await other.getAttribute('#reset-time', 'datetime'), nextReset);
      const before = await other.textContent('#reset-time');
      assert.match(before, /^1 min [23]\d s$/);
      assert.match(await other.textContent('#reset-line'), /^\s*Next reset in 1 min \d\d s\s*$/);
      await other.waitForFunction((was) => document.getElementById('reset-time').textContent !== was, before,
        { timeout: 2500 });

      // The switcher lists the finished periods, newest first.
      await other.waitForSelector('#periods:not([hidden])');
      const labels = await other.$$eval('#period-select option', (os) => os.map((o) => o.textContent));
      assert.equal(labels.length, 3);
      assert.equal(labels[0], 'Live · period 3');
      assert.match(labels[1], /^Period 2 · .+ – .+$/);
      assert.match(labels[2], /^Period 1 · /);

      // A finished period's standings, then back to live.
      await other.selectOption('#period-select', '2');
      await other.waitForSelector('#period-view:not([hidden])');
      assert.equal(await other.isHidden('#live-view'), true);
      assert.match(await other.textContent('#period-summary'), /^Final standings of period 2 · ended .+ · 12 players$/);
      assert.deepEqual(
        (await rows(other, '#period-players')).map(({ rank, name, score }) => `${rank}:${name}:${score}`),
        ['1:Ann:40', '2:Ben:30'],
      );
      assert.equal(await other.locator('#period-players button').count(), 0);
      await other.screenshot({ path: join(ARTIFACTS, 'period-desktop.png'), fullPage: true });
      await other.selectOption('#period-select', '1');
      await other.waitForSelector('#period-message:has-text("No one scored in this period.")');
      await other.click('#period-back');
      await other.waitForSelector('#period-view', { state: 'hidden' });
      assert.equal(await other.isVisible('#live-view'), true);
      assert.equal(await other.inputValue('#period-select'), 'live');

      // The reset was read out.
      await other.waitForFunction(() => document.getElementById('announcer').textContent
        .includes('Period 2 has ended; the board starts again.'), null, { timeout: 5000 });
      assert.deepEqual(errors, []);
    } finally {
      await other.close();
    }
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
