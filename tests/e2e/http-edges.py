#!/usr/bin/env python3
"""What `immerge serve` answers to calls at the edges of HTTP, sent byte for byte over a socket:
one line per case, "NAME STATUS CODE SECONDS", where CODE is the JSON body's Code ("-" for a body
that is not the service's JSON error shape, "html" for one that holds HTML, "ok" for a 200 JSON
answer). For cases of several answers on one connection, STATUS and CODE are joined with "+".

    http-edges.py PORT
"""
import json
import socket
import sys
import time

PORT = int(sys.argv[1])
# The server is keyless, so a call must name it by its address (service/keyless.h): "HERE" in a
# case stands for that address.
HERE = b"127.0.0.1:%d" % PORT
GET = b"GET /?Action=GetTask&Version=2020-09-30&ProjectName=nop&TaskType=MediaConvert&TaskId=none HTTP/1.1\r\nHost: HERE\r\n"


def exchange(data, pause=None, half_close=True):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    t = time.monotonic()
    if pause:  # send the head, wait for "100 Continue", then the body
        s.sendall(data[0])
        got = s.recv(4096)
        s.sendall(data[1])
        data = b""
        first = got
    else:
        first = b""
        try:
            s.sendall(data)
        except OSError:  # the server may close once it has answered; its answer is still read
            pass
    if half_close:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    out = first
    while True:
        try:
            b = s.recv(65536)
        except OSError:
            break
        if not b:
            break
        out += b
    s.close()
    return out, time.monotonic() - t


def answers(raw):
    """Each answer's (status, code) in raw, which may hold several."""
    found = []
    while raw.startswith(b"HTTP/1."):
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {l.split(b":", 1)[0].strip().lower(): l.split(b":", 1)[1].strip()
                  for l in lines[1:] if b":" in l}
        if status == 100:
            raw = rest
            continue
        n = int(fields.get(b"content-length", b"0"))
        body, raw = rest[:n], rest[n:]
        if b"<html" in body.lower():
            code = "html"
        else:
            try:
                doc = json.loads(body) if body else None
                ctype = fields.get(b"content-type", b"")
                code = ("ok" if status == 200 else doc["Code"]) \
                    if ctype.startswith(b"application/json") and isinstance(doc, dict) else "-"
                if code != "ok" and not doc.get("Message"):
                    code = "-"
            except (ValueError, KeyError, TypeError):
                code = "-"
        found.append((status, code))
    return found


def case(name, data, **kw):
    here = lambda b: b.replace(b"HERE", HERE)
    data = tuple(map(here, data)) if isinstance(data, tuple) else here(data)
    raw, secs = exchange(data, **kw)
    got = answers(raw) or [(0, "none")]
    print(name, "+".join(str(s) for s, _ in got), "+".join(c for _, c in got), "%.2f" % secs)


case("request-line-9MiB", b"GET /?Action=GetTask&X=" + b"a" * (9 << 20) + b" HTTP/1.1\r\nHost: HERE\r\n\r\n")
case("headers-9MiB", GET + (b"X-Pad: " + b"b" * 1000 + b"\r\n") * 9500 + b"\r\n")
case("not-http", b"GARBAGE\r\n\r\n")
case("http-2.0", b"GET / HTTP/2.0\r\nHost: HERE\r\n\r\n")
case("folded-header", GET + b"X-A: a\r\n  b\r\n\r\n")
case("body-over-1MiB", b"POST / HTTP/1.1\r\nHost: HERE\r\nContent-Length: 2000000\r\n\r\n" + b"a" * 2000000)
case("bad-content-length", b"POST / HTTP/1.1\r\nHost: HERE\r\nContent-Length: 12x\r\n\r\n")
case("body-cut-short", b"POST / HTTP/1.1\r\nHost: HERE\r\nContent-Length: 100\r\n\r\nabc")
case("bad-chunk", b"POST / HTTP/1.1\r\nHost: HERE\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
case("gzip-coding", b"POST / HTTP/1.1\r\nHost: HERE\r\nTransfer-Encoding: gzip\r\n\r\n")
case("nul-in-query", b"GET /?Action=GetTask&TaskId=a%00b HTTP/1.1\r\nHost: HERE\r\n\r\n")
case("nul-in-form", b"POST / HTTP/1.1\r\nHost: HERE\r\nContent-Type: application/x-www-form-urlencoded\r\n"
     b"Content-Length: 30\r\n\r\nAction=GetTask&TaskId=a%00bcde")
case("put", b"PUT / HTTP/1.1\r\nHost: HERE\r\nContent-Length: 0\r\n\r\n")
# Calls that are answered: chunked form bodies, HTTP/1.0, LF-only lines, an absolute target,
# two calls on one connection (keep-alive, pipelined), and Expect: 100-continue.
case("chunked-form", b"POST / HTTP/1.1\r\nHost: HERE\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
     b"1d\r\nAction=ListTasks&ProjectName=\r\n3;ext=1\r\nnop\r\n0\r\nX-Trailer: 1\r\n\r\n")
case("http-1.0", b"GET /?Action=ListTasks&ProjectName=nop HTTP/1.0\r\nHost: HERE\r\n\r\n")
case("lf-lines", b"GET /?Action=ListTasks&ProjectName=nop HTTP/1.1\nHost: HERE\n\n")
case("absolute-target", b"GET http://HERE/?Action=ListTasks&ProjectName=nop HTTP/1.1\r\nHost: HERE\r\n\r\n")
case("absolute-no-path", b"GET http://HERE?Action=ListTasks&ProjectName=nop HTTP/1.1\r\nHost: HERE\r\n\r\n")
case("pipelined", b"\r\n" + GET + b"\r\n" + b"GET /?Action=ListTasks&ProjectName=nop HTTP/1.1\r\nHost: HERE\r\n"
     b"Connection: close\r\n\r\n")
body = b"Action=ListTasks&ProjectName=nop&Pad=" + b"a" * 100000
case("expect-100", (b"POST / HTTP/1.1\r\nHost: HERE\r\nExpect: 100-continue\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
                    % len(body), body), pause=True)
# Host (RFC 9112, 3.2): an HTTP/1.1 call without one, or with two, is malformed; a keyless server
# answers no other name than its address, nor a call without a name (HTTP/1.0 may leave it out),
# and an absolute target's authority is the one that counts, whatever Host says.
case("no-host", b"GET /?Action=ListTasks&ProjectName=nop HTTP/1.1\r\n\r\n")
case("two-hosts", b"GET /?Action=ListTasks&ProjectName=nop HTTP/1.1\r\nHost: HERE\r\nHost: evil.example\r\n\r\n")
case("foreign-host", b"GET /?Action=ListTasks&ProjectName=nop HTTP/1.1\r\nHost: evil.example\r\n\r\n")
case("http-1.0-no-host", b"GET /?Action=ListTasks&ProjectName=nop HTTP/1.0\r\n\r\n")
case("absolute-foreign", b"GET http://evil.example/?Action=ListTasks&ProjectName=nop HTTP/1.1\r\nHost: HERE\r\n\r\n")
