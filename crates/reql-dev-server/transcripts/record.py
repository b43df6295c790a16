#!/usr/bin/env python3
"""Records the cases the differential fuzzer found from a real RethinkDB 2.4.4
into differential.jsonl, in the line format of the shared conformance
transcripts (see their README), so that CI checks the dev server against
them without a real server.

    python3 record.py --port 28015 [--out differential.jsonl]

Terms are built with the official Python driver and sent as raw frames on a
single connection; the database is `rqlconf` and the server's name is
written `<server_name>`, as the replay expects.
"""

import argparse
import json
import socket
import struct

from rethinkdb import r
from rethinkdb.ast import ReQLEncoder

DB = "rqlconf"
t = r.table("t")


def cases():
    """(description, query, hints): each found by the fuzzer, one per class."""
    docs = [{"id": "p%d" % i, "score": i} for i in range(20)]
    return [
        ("r.dbCreate('rqlconf')", r.db_create(DB), {}),
        ("r.tableCreate('t')", r.table_create("t"), {}),
        ("r.table('t').insert(p0..p19)", t.insert(docs), {}),
        ("r.table('t').indexCreate('score')", t.index_create("score"), {}),
        ("r.table('t').indexWait()", t.index_wait().pluck("index", "ready"), {}),
        # Object operations on a missing document fail with a missing value.
        ("r.table('t').get('zz').pluck('x')  // ReqlNonExistenceError", t.get("zz").pluck("x"), {}),
        ("r.table('t').get('zz').without('x')", t.get("zz").without("x"), {}),
        ("r.table('t').get('zz').pluck('x').default(5)  // default catches it", t.get("zz").pluck("x").default(5), {}),
        ("r.table('t').get('zz').merge({x: 1})", t.get("zz").merge({"x": 1}), {}),
        ("r.table('t').get('zz').replace(function(d) { return d.merge({x: 1}); })",
         t.get("zz").replace(lambda d: d.merge({"x": 1})), {}),
        # A changed primary key, from nothing and from a document.
        ("r.table('t').get('zz').replace({id: 'q'})  // (null -> ...), no quotes, no full stop",
         t.get("zz").replace({"id": "q"}), {}),
        ("r.table('t').get('zz').replace({id: 'q'}, {returnChanges: 'always'})",
         t.get("zz").replace({"id": "q"}, return_changes="always"), {}),
        ("r.table('t').get('p3').replace({id: 'q'}, {returnChanges: 'always'})",
         t.get("p3").replace({"id": "q"}, return_changes="always"), {}),
        # Which duplicate a batch's first_error names: the hash shards answer in turn.
        ("r.table('t').insert([{id: 'p0'}, ..., {id: 'p19'}])  // first_error names p5",
         t.insert([{"id": "p%d" % i} for i in range(20)]), {}),
        ("r.table('t').insert([{id: 'p19'}, ..., {id: 'p0'}])  // first_error names p16",
         t.insert([{"id": "p%d" % i} for i in reversed(range(20))]), {}),
        ("r.table('t').insert([{id: 'p1'}, {id: null}], {returnChanges: 'always'})  // an invalid key comes first",
         t.insert([{"id": "p1"}, {"id": None}], return_changes="always"), {"unordered": True}),
        ("r.table('t').insert([{id: 'p1'}, {id: r.minval}], {returnChanges: 'always'})  // turned away in the table",
         t.insert([{"id": "p1"}, {"id": r.minval}], return_changes="always"), {}),
        ("r.table('t').insert([{id: 'p3'}, {id: 'p1'}, {id: 'zz', score: 1}], {returnChanges: 'always'})  // changes in document order",
         t.insert([{"id": "p3"}, {"id": "p1"}, {"id": "zz", "score": 1}], return_changes="always"), {}),
        ("r.table('t').insert([{id: 'p1'}, {id: 'c', score: 30}, 7], {returnChanges: 'always'})",
         t.insert([{"id": "p1"}, {"id": "c", "score": 30}, 7], return_changes="always"), {"unordered": True}),
        # returnChanges: 'always' reports what did not change.
        ("r.table('t').insert({id: 'p1', score: 5}, {returnChanges: 'always'})",
         t.insert({"id": "p1", "score": 5}, return_changes="always"), {}),
        ("r.table('t').get('p2').replace({id: 'p2', score: 2}, {returnChanges: 'always'})",
         t.get("p2").replace({"id": "p2", "score": 2}, return_changes="always"), {}),
        ("r.table('t').insert({id: 'p2'}, {conflict: 'update', returnChanges: 'always'})",
         t.insert({"id": "p2"}, conflict="update", return_changes="always"), {}),
        ("r.table('t').get('zz').delete({returnChanges: 'always'})",
         t.get("zz").delete(return_changes="always"), {}),
        ("r.table('t').get('zz').replace(null, {returnChanges: 'always'})",
         t.get("zz").replace(None, return_changes="always"), {}),
        ("r.table('t').get('p4').replace(5, {returnChanges: 'always'})",
         t.get("p4").replace(5, return_changes="always"), {}),
        # A write on an empty selection has no `changes`.
        ("r.table('t').between(100, 200, {index: 'score'}).delete({returnChanges: true})",
         t.between(100, 200, index="score").delete(return_changes=True), {}),
        ("r.table('t').getAll('zz').update({x: 1}, {returnChanges: 'always'})",
         t.get_all("zz").update({"x": 1}, return_changes="always"), {}),
        ("r.table('t').insert([], {returnChanges: true})", t.insert([], return_changes=True), {}),
        ("r.table('t').get('zz').delete({returnChanges: true})  // one document: changes is there",
         t.get("zz").delete(return_changes=True), {}),
        # Arguments are checked before the stream is read.
        ("r.table('t').orderBy({index: 'score'}).nth(-2)", t.order_by(index="score").nth(-2), {}),
        ("r.table('t').orderBy({index: 'score'}).nth(-1)", t.order_by(index="score").nth(-1), {}),
        ("r.table('t').orderBy({index: 'nosuch'}).nth(-2)", t.order_by(index="nosuch").nth(-2), {}),
        ("r.table('t').orderBy({index: 'nosuch'}).limit(-1)", t.order_by(index="nosuch").limit(-1), {}),
        ("r.table('t').orderBy({index: 'nosuch'}).limit(0)  // never read", t.order_by(index="nosuch").limit(0), {}),
        ("r.table('t').orderBy({index: 'nosuch'}).limit(0).typeOf()",
         t.order_by(index="nosuch").limit(0).type_of(), {}),
        ("r.table('t').orderBy({index: 'nosuch'}).limit(1)", t.order_by(index="nosuch").limit(1), {}),
        ("r.table('t').indexRename('nosuch', 'score', {overwrite: true})",
         t.index_rename("nosuch", "score", overwrite=True), {}),
        ("r.table('t').indexRename('nosuch', 'score')", t.index_rename("nosuch", "score"), {}),
        ("r.dbDrop('rqlconf')", r.db_drop(DB), {}),
    ]


def wire(query):
    """The term as the driver puts it on the wire."""
    return json.loads(ReQLEncoder().encode(query))


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the server closed the connection")
        buf += chunk
    return buf


def connect(host, port):
    sock = socket.create_connection((host, port))
    # The legacy V0_4 handshake with an empty key: no SCRAM needed to record.
    sock.sendall(struct.pack("<III", 0x400C2D20, 0, 0x7E6970C7))
    reply = b""
    while not reply.endswith(b"\0"):
        reply += read_exact(sock, 1)
    if reply != b"SUCCESS\0":
        raise RuntimeError(reply)
    return sock


def exchange(sock, token, query):
    body = json.dumps(query).encode()
    sock.sendall(struct.pack("<QI", token, len(body)) + body)
    got_token, length = struct.unpack("<QI", read_exact(sock, 12))
    assert got_token == token
    return json.loads(read_exact(sock, length))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=28015)
    ap.add_argument("--out", default="differential.jsonl")
    args = ap.parse_args()
    sock = connect(args.host, args.port)
    server_name = exchange(sock, 0, [5])["r"][0]["name"]
    optargs = {"db": wire(r.db(DB))}
    seq = 0
    with open(args.out, "w") as out:
        for step, (desc, query, hints) in enumerate(cases(), start=1):
            token = step
            send = [1, wire(query), optargs]
            answer = exchange(sock, token, send)
            answer = json.loads(json.dumps(answer).replace(server_name, "<server_name>"))
            line = {"conn": 1, "step": step, "desc": desc, "token": token, "send": send,
                    "recv": [answer], "seq": seq + 1, "recv_seq": [seq + 2]}
            line.update(hints)
            seq += 2
            out.write(json.dumps(line) + "\n")
    print("recorded %d lines from %s into %s" % (step, server_name, args.out))


if __name__ == "__main__":
    main()
