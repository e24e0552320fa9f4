#!/usr/bin/env python3
"""Joins FLAC files of different sample rates into one FLAC stream whose rate changes mid-stream,
as the FLAC decoder testbench's "changing samplerate" file does.

    flac-join.py OUT IN.flac...

Every input must use the same fixed block size, and every input but the last must hold a whole
number of blocks (so that only the stream's last frame is short, as a fixed-blocksize stream
requires). The first input's STREAMINFO is kept with the total sample count and MD5 set to
"unknown" (0): neither has one meaning across rates. Each later frame is renumbered to follow on
and its header CRC-8 and frame CRC-16 recomputed, so the stream checks out frame by frame.
"""
import sys


def crc8(data):
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def utf8_number(n):
    """FLAC's UTF-8-like coding of a frame number."""
    if n < 0x80:
        return bytes([n])
    for length, lead in ((2, 0xC0), (3, 0xE0), (4, 0xF0), (5, 0xF8), (6, 0xFC)):
        if n < 1 << (5 * length + 1):
            out = [0x80 | ((n >> (6 * i)) & 0x3F) for i in range(length - 1)][::-1]
            return bytes([lead | (n >> (6 * (length - 1)))] + out)
    raise ValueError(n)


def header_length(frame):
    """Bytes of a frame header before its CRC-8, or None if it is not one."""
    if len(frame) < 6 or frame[0] != 0xFF or frame[1] != 0xF8:
        return None
    size_code, rate_code = frame[2] >> 4, frame[2] & 0x0F
    if size_code == 0 or rate_code == 0x0F:
        return None
    i, first = 4, frame[4]
    extra = 0
    while first & 0x80 and extra < 6:
        extra += 1
        first <<= 1
    i += 1 + (extra - 1 if extra else 0)
    i += {6: 1, 7: 2}.get(size_code, 0)
    i += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    return i if i < len(frame) and crc8(frame[:i]) == frame[i] else None


def frames(data):
    """The frames of a FLAC file: (header length, bytes)."""
    assert data[:4] == b"fLaC", "not a FLAC file"
    i = 4
    while True:
        last, length = data[i] & 0x80, int.from_bytes(data[i + 1:i + 4], "big")
        i += 4 + length
        if last:
            break
    starts = []
    pos = i
    while pos < len(data):
        starts.append(pos)
        nxt = pos + 2
        while True:
            nxt = data.find(b"\xff\xf8", nxt)
            if nxt < 0:
                nxt = len(data)
                break
            h = header_length(data[nxt:nxt + 32])
            if h and crc16(data[pos:nxt - 2]) == int.from_bytes(data[nxt - 2:nxt], "big"):
                break
            nxt += 1
        pos = nxt
    starts.append(len(data))
    for a, b in zip(starts, starts[1:]):
        yield header_length(data[a:a + 32]), data[a:b]


def main(out, inputs):
    first = open(inputs[0], "rb").read()
    i = 4
    while True:
        last, length = first[i] & 0x80, int.from_bytes(first[i + 1:i + 4], "big")
        if first[i] & 0x7F == 0:  # STREAMINFO: frame sizes, total samples and MD5 unknown
            info = bytearray(first[i + 4:i + 4 + length])
            info[4:10] = bytes(6)
            info[13] &= 0xF0
            info[14:18] = bytes(4)
            info[18:34] = bytes(16)
            first = first[:i + 4] + bytes(info) + first[i + 4 + length:]
        i += 4 + length
        if last:
            break
    body = bytearray(first[:i])
    number = 0
    for path in inputs:
        for hlen, frame in frames(open(path, "rb").read()):
            old = frame[4:hlen]
            extra = 0
            lead = old[0]
            while lead & 0x80:
                extra += 1
                lead <<= 1
            rest = old[max(1, extra):]
            header = frame[:4] + utf8_number(number) + rest
            header += bytes([crc8(header)])
            new = header + frame[hlen + 1:-2]
            body += new + crc16(new).to_bytes(2, "big")
            number += 1
    open(out, "wb").write(bytes(body))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
