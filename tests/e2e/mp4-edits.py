#!/usr/bin/env python3
"""mp4-edits.py FILE: what an MP4 or MOV file says about its first audio track's length, read
from the boxes themselves (not through a decoder): the movie's timescale (mvhd), the track's
(mdhd), its edit list (elst: each entry's duration in the movie's timescale and its start in the
track's), the samples and packets its sample table holds (stts), and the iTunes gapless atom (iTunSMPB) if
there is one. Prints one JSON object. The boxes are ISO/IEC 14496-12's; iTunSMPB is Apple's
freeform ilst item (moov/udta/meta/ilst/----, mean "com.apple.iTunes", name "iTunSMPB")."""
import json
import struct
import sys

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta", b"ilst", b"----"}


def boxes(data, start, end):
    """(type, payload start, payload end) of each box in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        head = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise ValueError("box %r at %d overruns its parent" % (kind, pos))
        yield kind, pos + head, pos + size
        pos += size


def find(data, start, end, path):
    """Every box at path (a list of types) below data[start:end]."""
    if not path:
        return [(start, end)]
    found = []
    for kind, a, b in boxes(data, start, end):
        if kind == path[0]:
            if kind == b"meta":  # a full box: version and flags before its children
                a += 4
            found += find(data, a, b, path[1:])
    return found


def full(data, a):
    return data[a], a + 4  # version, where the fields start


def main():
    data = open(sys.argv[1], "rb").read()
    out = {}
    (moov_a, moov_b), = find(data, 0, len(data), [b"moov"])
    (a, _), = find(data, moov_a, moov_b, [b"mvhd"])
    version, f = full(data, a)
    out["movie_timescale"] = struct.unpack(">I", data[f + (16 if version else 8):][:4])[0]
    for ta, tb in find(data, moov_a, moov_b, [b"trak"]):
        (ha, _), = find(data, ta, tb, [b"mdia", b"hdlr"])
        if data[ha + 8:ha + 12] != b"soun":
            continue
        (ma, _), = find(data, ta, tb, [b"mdia", b"mdhd"])
        version, f = full(data, ma)
        out["track_timescale"] = struct.unpack(">I", data[f + (16 if version else 8):][:4])[0]
        edits = []
        for ea, _ in find(data, ta, tb, [b"edts", b"elst"]):
            version, f = full(data, ea)
            n = struct.unpack(">I", data[f:f + 4])[0]
            f += 4
            for _ in range(n):
                if version:
                    dur, media = struct.unpack(">Qq", data[f:f + 16])
                    f += 20
                else:
                    dur, media = struct.unpack(">Ii", data[f:f + 8])
                    f += 12
                edits.append({"duration": dur, "media_time": media})
        out["edits"] = edits
        (sa, _), = find(data, ta, tb, [b"mdia", b"minf", b"stbl", b"stts"])
        _, f = full(data, sa)
        n = struct.unpack(">I", data[f:f + 4])[0]
        runs = [struct.unpack(">II", data[f + 4 + 8 * i:f + 12 + 8 * i]) for i in range(n)]
        out["stts_samples"] = sum(c * d for c, d in runs)  # the track's length in its timescale
        out["stts_count"] = sum(c for c, _ in runs)  # its packets
        break
    for la, lb in find(data, moov_a, moov_b, [b"udta", b"meta", b"ilst", b"----"]):
        items = {k: data[a:b] for k, a, b in boxes(data, la, lb)}
        name = items.get(b"name", b"")[4:]
        if name == b"iTunSMPB":
            out["iTunSMPB"] = items[b"data"][8:].decode("ascii").strip()
    json.dump(out, sys.stdout)
    print()


main()
