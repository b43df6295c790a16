// Unit tests of the page's optimistic "+1" bookkeeping (static/model.js).
// No browser and no stack needed: node --test e2e/model.test.mjs

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BoardState, FLOOR_MS, byRank } from '../crates/web/static/model.js';

const board = (...players) => ({
  id: 'b',
  name: 'B',
  players: players.map(([id, score]) => ({ id, name: id.toUpperCase(), score })),
});
const scores = (state, now) => state.view(now).players.map((p) => `${p.id}:${p.score}`);

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
  assert.equal(s.nextExpiry(), 100 + FLOOR_MS);
  assert.deepEqual(scores(s, 100 + FLOOR_MS), ['a:1']);
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

test('ties sort as the server does: by id, descending', () => {
  const players = [{ id: 'a', score: 1 }, { id: 'c', score: 1 }, { id: 'b', score: 2 }];
  assert.deepEqual(players.sort(byRank).map((p) => p.id), ['b', 'c', 'a']);
});
