#!/usr/bin/python3
"""A Sotto participant on aiortc, written against docs/API.md alone.

It joins a room with a complete SDP offer, opens the event stream, answers
every server offer, and records the RTP that arrives on each m-line. It
implements no end-to-end encryption (docs/PROTOCOL.md): it declares none at
join, publishes aiortc's plain Opus (silence), and keeps what it receives as
the opaque bytes it is.

It is driven through standard input and reports on standard output, one
JSON object per line (see README.md). Logs go to standard error.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver

# Payloads kept per m-line for the report, newest last.
KEEP = 40


def report(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def log(*args):
    print("aiortc client:", *args, file=sys.stderr, flush=True)


# ---- HTTP (docs/API.md, Routes) ----


class APIError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


def http(method, url, auth=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raise APIError(e.code, json.loads(e.read() or b"null")) from None


async def call(method, url, auth=None, body=None):
    return await asyncio.to_thread(http, method, url, auth, body)


# ---- a minimal WebSocket client (RFC 6455), enough for the event stream ----


class WebSocket:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url):
        u = urllib.parse.urlsplit(url)
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        if " 101 " not in status:
            raise ConnectionError(f"event stream refused: {status}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise ConnectionError("event stream: wrong Sec-WebSocket-Accept")
        return cls(reader, writer)

    async def _frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        await self.writer.drain()

    async def send(self, text):
        await self._frame(0x1, text.encode())

    async def recv(self):
        """The next text message, or None once the stream is closed."""
        message = b""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            payload = await self.reader.readexactly(n)
            if opcode == 0x8:
                await self._frame(0x8, payload[:2])
                return None
            if opcode == 0x9:
                await self._frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1):
                message += payload
                if b0 & 0x80:
                    return message.decode()


# ---- SFrame (RFC 9605 section 4.3, docs/PROTOCOL.md section 7) ----


def sframe_header(b):
    """KID, CTR and header length of an SFrame frame, or None."""
    if not b:
        return None
    config, n = b[0], 1

    def field(extended, v):
        nonlocal n
        if not extended:
            return v
        length = v + 1
        if len(b) < n + length:
            raise ValueError
        x = int.from_bytes(b[n : n + length], "big")
        n += length
        return x

    try:
        kid = field(config & 0x80, (config >> 4) & 0x07)
        ctr = field(config & 0x08, config & 0x07)
    except ValueError:
        return None
    return kid, ctr, n


# ---- the participant ----


class Participant:
    def __init__(self, args):
        self.args = args
        self.pc = None
        self.ws = None
        self.session = None
        self.received = {}  # mid -> {"packets", "ssrcs", "payload_types", "frames"}
        self.closed = asyncio.Event()

    def record(self, receiver, packet):
        mid = next((t.mid for t in self.pc.getTransceivers() if t.receiver is receiver), None)
        r = self.received.setdefault(mid, {"packets": 0, "ssrcs": [], "payload_types": [], "frames": []})
        r["packets"] += 1
        if packet.ssrc not in r["ssrcs"]:
            r["ssrcs"].append(packet.ssrc)
        if packet.payload_type not in r["payload_types"]:
            r["payload_types"].append(packet.payload_type)
        h = sframe_header(packet.payload)
        r["frames"].append(
            {
                "ssrc": packet.ssrc,
                "seq": packet.sequence_number,
                "payload": packet.payload.hex(),
                "kid": None if h is None else h[0],
                "ctr": None if h is None else h[1],
                "header": None if h is None else h[2],
            }
        )
        del r["frames"][:-KEEP]

    async def join(self):
        base, auth = self.args.server, "Bearer " + self.args.token
        ice = await call("GET", base + "/v1/ice-servers", auth)
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential")) for s in ice["ice_servers"]]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.pc.on("track", lambda track: report("track", id=track.id, mid=self.mid_of(track)))
        self.pc.on("connectionstatechange", lambda: report("connection", state=self.pc.connectionState))
        if self.args.listen_only:
            self.pc.addTransceiver("audio", direction="recvonly")
        else:
            self.pc.addTrack(AudioStreamTrack())
        # aiortc gathers every candidate here: the offer is complete.
        await self.pc.setLocalDescription(await self.pc.createOffer())
        try:
            jr = await call("POST", f"{base}/v1/rooms/{self.args.room}/join", auth, {"sdp": self.pc.localDescription.sdp})
        except APIError as e:
            report("join_failed", status=e.status, body=e.body)
            return False
        self.session = jr["session"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=jr["sdp"], type="answer"))
        report("joined", response=jr, offer=self.pc.localDescription.sdp)
        url = "ws" + base[len("http") :] + jr["events_url"] + "?session=" + urllib.parse.quote(self.session)
        self.ws = await WebSocket.connect(url)
        return True

    def mid_of(self, track):
        return next((t.mid for t in self.pc.getTransceivers() if t.receiver.track is track), None)

    async def events(self):
        while True:
            raw = await self.ws.recv()
            if raw is None:
                report("stream_closed")
                self.closed.set()
                return
            m = json.loads(raw)
            report("message", message=m)
            if m.get("type") == "offer":
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=m["sdp"], type="offer"))
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self.ws.send(json.dumps({"type": "answer", "sdp": self.pc.localDescription.sdp}))
                report("answered", answer=self.pc.localDescription.sdp)

    async def commands(self):
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            if cmd["cmd"] == "send":
                await self.ws.send(cmd["text"])
            elif cmd["cmd"] == "stats":
                report("stats", received=self.received, tracks=[{"mid": t.mid, "id": t.receiver.track.id if t.receiver.track else None} for t in self.pc.getTransceivers()])
            elif cmd["cmd"] == "quit":
                return


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--server", required=True, help="base URL, such as http://127.0.0.1:7880")
    p.add_argument("--room", required=True)
    p.add_argument("--token", required=True, help="room token (sotto token)")
    p.add_argument("--listen-only", action="store_true", help="offer a recvonly m-line and publish nothing")
    p.add_argument("--loopback", action="store_true", help="gather candidates on 127.0.0.1 only (tests)")
    args = p.parse_args()
    if args.loopback:
        # aioice leaves the loopback interface out; tests stay on it.
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

    me = Participant(args)

    async def capture(receiver, packet, arrival_time_ms):
        # The payload is another client's SFrame ciphertext: nothing a stack
        # without docs/PROTOCOL.md can decode. Record it instead.
        me.record(receiver, packet)

    RTCRtpReceiver._handle_rtp_packet = capture
    if not await me.join():
        return
    events = asyncio.ensure_future(me.events())
    await me.commands()
    events.cancel()
    await me.pc.close()


if __name__ == "__main__":
    asyncio.run(main())
