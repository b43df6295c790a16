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

/** The rows of the player list: `[{id, name, score, rank}]`. */
function rows(page) {
  return page.$$eval('#players > li', (lis) =>
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
  const created = [boardId];

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
