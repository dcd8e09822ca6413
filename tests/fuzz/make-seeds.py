#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets whose inputs are binary or framed
(tests/fuzz/corpus/<target>/). Each seed exercises one rule of the target's model, on both
sides of every limit. Re-run after changing a target's input format:

    python3 tests/fuzz/make-seeds.py

Seeds found by fuzzing (merged from build-fuzz/new-corpus/) are kept beside these; this
script only (re)writes the files it names.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def writer(target):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)

    def w(name, data):
        with open(os.path.join(d, name), 'wb') as f:
            f.write(data)
    return w


# ---- http_chunked: 2 bytes of split/piece seed, then the body --------------------------
def chunked():
    w = writer('http_chunked')

    def c(name, body, seed=b'\x05\x00'):
        w(name, seed + body)
    c('uppercase_hex_chunks', b'A\r\n0123456789\r\nF\r\n0123456789abcde\r\n000\r\n\r\n')
    c('leading_zeros_last_chunk_ext', b'0003\r\nabc\r\n00;last\r\n\r\n')
    c('bws_before_ext', b'3 \t;a=b\r\nabc\r\n0\t;x="q;\\"\r\n\r\n')
    c('space_before_crlf', b'3 \r\nabc\r\n0\r\n\r\n')
    c('ext_control_char', b'3;a\x01b\r\nabc\r\n0\r\n\r\n')
    c('ext_obs_text', b'3;name="\xe2\x82\xac"\r\nabc\r\n0\r\n\r\n')
    c('size_line_4096', b'1;' + b'x' * 4094 + b'\r\nz\r\n0;' + b'y' * 4094 + b'\r\n\r\n')
    c('size_line_4097', b'1;' + b'x' * 4095 + b'\r\nz\r\n0\r\n\r\n')
    c('size_overflow', b'8000000000000000\r\n')
    c('size_many_zeros', b'0' * 5000 + b'1\r\na\r\n0\r\n\r\n')
    c('no_size', b';ext\r\n0\r\n\r\n')
    c('data_not_crlf', b'3\r\nabcd\r\n0\r\n\r\n')
    c('data_bare_cr', b'3\r\nabc\rx0\r\n\r\n')
    c('size_bare_cr', b'3\rabc\r\n0\r\n\r\n')
    c('trailer_fields', b'0\r\nX-Checksum: abc \r\nEmpty:\r\nObs: \xff\xfe\r\n\r\nGET / HTTP/1.1\r\n')
    c('trailer_obs_fold', b'0\r\nX: a\r\n b\r\n\r\n')
    c('trailer_space_before_colon', b'0\r\nX : a\r\n\r\n')
    c('trailer_no_colon', b'0\r\nX\r\n\r\n')
    c('trailer_bare_lf', b'0\r\nX: a\n\r\n')
    c('trailer_final_bare_cr', b'0\r\nX: a\r\n\rx')
    c('trailer_line_4096', b'0\r\nX:' + b'v' * 4094 + b'\r\n\r\n')
    c('trailer_line_4097', b'0\r\nX:' + b'v' * 4095 + b'\r\n\r\n')
    # A trailer section of exactly 16384 bytes (every CRLF counted), and one byte more.
    line = b'T:' + b'v' * 1022 + b'\r\n'
    sec = line * 15
    rest = 16384 - len(sec) - 4
    c('trailer_section_16384', b'0\r\n' + sec + b'T:' + b'w' * (rest - 2) + b'\r\n\r\n')
    c('trailer_section_16385', b'0\r\n' + sec + b'T:' + b'w' * (rest - 1) + b'\r\n\r\n')
    c('body_then_next_request', b'1\r\na\r\n0\r\n\r\nPOST / HTTP/1.1\r\n', b'\x20\x00')
    c('partial_data', b'10\r\n0123456', b'\x03\x00')


# ---- ws_utf8: the bytes ------------------------------------------------------------------
def utf8():
    w = writer('ws_utf8')
    w('ascii_long', b'The quick brown fox jumps over the lazy dog. 0123456789' * 3)
    w('boundaries_valid',
      '\u007f\u0080\u07ff\u0800\ud7ff\ue000\uffff\U00010000\U0010ffff'.encode())
    w('kosme', 'κόσμε'.encode())
    w('mixed_after_ascii_runs', b'abcdefg' + 'é'.encode() + b'abcdefghijklmnop' +
      '€'.encode() + b'x' * 9 + '𝄞'.encode())
    w('overlong_2', b'ab\xc0\x80cd')
    w('overlong_3', b'\xe0\x80\xaf')
    w('overlong_4', b'\xf0\x80\x80\xaf')
    w('overlong_max', b'\xc1\xbf\xe0\x9f\xbf\xf0\x8f\xbf\xbf')
    w('surrogate_high', b'\xed\xa0\x80')
    w('surrogate_low', b'\xed\xbf\xbf')
    w('surrogate_pair', b'\xed\xa1\x8c\xed\xbe\xb4')
    w('above_10ffff', b'\xf4\x90\x80\x80')
    w('f5_ff', b'\xf5\x80\x80\x80\xfe\xff')
    w('five_six_byte', b'\xf8\x88\x80\x80\x80\xfc\x84\x80\x80\x80\x80')
    w('lone_continuation', b'abc\x80def')
    w('truncated_at_end', b'hello \xe2\x82')
    w('truncated_then_ascii', b'\xe2\x82a')
    w('truncated_4', b'\xf0\x9f\x98')
    w('ascii_run_then_bad_at_odd_offset', b'abcdefghijk\xffmnop')


# ---- ws_stream: flags, 2 bytes of schedule seed, client share, client + backend streams ---
KEY = bytes([0x37, 0xfa, 0x21, 0x3d])
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10


def frame(op, payload=b'', fin=True, masked=False, rsv=0, length=None, form=None, key=KEY):
    n = len(payload) if length is None else length
    out = bytes([(0x80 if fin else 0) | (rsv << 4) | op])
    m = 0x80 if masked else 0
    if form is None:
        form = 7 if n < 126 else 16 if n < 65536 else 64
    if form == 7:
        out += bytes([m | n])
    elif form == 16:
        out += bytes([m | 126]) + struct.pack('>H', n)
    else:
        out += bytes([m | 127]) + struct.pack('>Q', n)
    if masked:
        out += key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    else:
        out += payload
    return out


def cf(op, payload=b'', **kw):  # client frames are masked
    return frame(op, payload, masked=True, **kw)


def close_payload(code, reason=b''):
    return struct.pack('>H', code) + reason


def stream_seed(validate=False, deflate=False, limit=3, seed=0x0301, client=b'', backend=b''):
    flags = (1 if validate else 0) | (2 if deflate else 0) | (limit << 2)
    head = lambda share: bytes([flags, seed & 0xff, seed >> 8, share])
    if not backend:
        return head(255) + client
    if not client:
        return head(0) + backend
    # The split is rest * share / 255: pad the client's stream after its last frame (the
    # session reads nothing after a Close or a violation) until some share splits exactly.
    for pad in range(0, 512):
        c = client + b'\x00' * pad
        total = len(c) + len(backend)
        for share in range(1, 255):
            if total * share // 255 == len(c):
                return head(share) + c + backend
    raise ValueError('no exact split')


def stream():
    w = writer('ws_stream')
    limits = {'none': 0, '64': 1, '4096': 2, '16MiB': 3}
    s = lambda name, **kw: w(name, stream_seed(**kw))
    # Valid traffic, byte-identical through the relay.
    s('client_hello', client=cf(TEXT, b'Hello'))
    s('backend_hello', backend=frame(TEXT, b'Hello'))
    s('both_ways_echo', client=cf(TEXT, b'ping?') + cf(CLOSE, close_payload(1000)),
      backend=frame(TEXT, b'pong!') + frame(CLOSE, close_payload(1000)))
    s('every_length_form',
      client=cf(BINARY, b'') + cf(BINARY, b'x' * 125) + cf(BINARY, b'y' * 126) +
      cf(BINARY, bytes(range(256)) * 4) + cf(BINARY, b'z' * 5, form=16) +
      cf(BINARY, b'w' * 3, form=64))
    s('fragments_with_pings', validate=True,
      client=cf(TEXT, 'h€'.encode()[:2], fin=False) + cf(PING, b'p1') +
      cf(CONT, 'h€'.encode()[2:], fin=False) + cf(PONG, b'') + cf(CONT, b'!'))
    s('utf8_split_across_frames', validate=True,
      backend=frame(TEXT, b'\xf0\x9f', fin=False) + frame(CONT, b'\x98', fin=False) +
      frame(CONT, b'\x80 ok'))
    s('long_masked_text_many_chains', validate=True, seed=0x0a0b,
      client=cf(TEXT, ('é' * 3000).encode()))
    s('deflate_rsv1', deflate=True, validate=True,
      client=cf(TEXT, b'\xf2\x48\xcd\xc9\xc9\x07\x00', rsv=4) + cf(BINARY, b'\x00', rsv=4),
      backend=frame(TEXT, b'\xff\xfe', rsv=4, fin=False) + frame(CONT, b'\x01'))
    s('close_codes_valid', backend=frame(CLOSE, close_payload(3000, 'fin ✓'.encode())))
    s('close_empty', client=cf(CLOSE))
    s('close_then_junk', client=cf(CLOSE, close_payload(1001)) + cf(TEXT, b'after'))
    # 1002.
    s('rsv_without_extension', client=cf(TEXT, b'a') + cf(TEXT, b'b', rsv=4))
    s('rsv1_on_continuation', deflate=True, client=cf(TEXT, b'a', fin=False, rsv=4) +
      cf(CONT, b'b', rsv=4))
    s('rsv1_on_control', deflate=True, backend=frame(PING, b'', rsv=4))
    s('rsv2_rsv3', backend=frame(BINARY, b'', rsv=2) + frame(BINARY, b'', rsv=1))
    s('reserved_opcode_data', client=cf(3, b'abc'))
    s('reserved_opcode_control', backend=frame(0xB, b'abc'))
    s('unmasked_client_frame', client=frame(TEXT, b'hi'))
    s('masked_backend_frame', backend=cf(TEXT, b'hi'))
    s('fragmented_ping', client=cf(PING, b'x', fin=False))
    s('ping_126', backend=frame(PING, b'p' * 126))
    s('ping_125', backend=frame(PING, b'p' * 125) + frame(PONG, b'q' * 125))
    s('orphan_continuation', client=cf(CONT, b'x'))
    s('text_inside_message', client=cf(TEXT, b'a', fin=False) + cf(BINARY, b'b'))
    s('length_top_bit', backend=frame(BINARY, b'', length=1 << 63, form=64))
    s('close_one_byte', client=cf(CLOSE, b'\x03'))
    s('close_code_1005', backend=frame(CLOSE, close_payload(1005)))
    s('close_code_2999', backend=frame(CLOSE, close_payload(2999)))
    s('close_code_5000', client=cf(CLOSE, close_payload(5000)))
    # 1007.
    s('close_reason_not_utf8', client=cf(CLOSE, close_payload(1000, b'\xc0\xaf')))
    s('invalid_utf8_fail_fast', validate=True,
      client=cf(TEXT, b'valid, then \xed\xa0\x80 and more', fin=False))
    s('invalid_utf8_unchecked', validate=False, client=cf(TEXT, b'\xff\xfe'))
    s('text_ends_in_code_point', validate=True, backend=frame(TEXT, b'abc\xe2\x82'))
    s('compressed_text_unchecked', deflate=True, validate=True,
      client=cf(TEXT, b'\xff\xfe', rsv=4))
    # 1009.
    s('too_big_one_frame', limit=limits['64'], client=cf(BINARY, b'x' * 65))
    s('at_limit_one_frame', limit=limits['64'], client=cf(BINARY, b'x' * 64))
    s('too_big_by_fragments', limit=limits['64'],
      backend=frame(TEXT, b'a' * 40, fin=False) + frame(PING) + frame(CONT, b'b' * 25))
    s('zero_limit', limit=limits['none'], client=cf(BINARY, b'') + cf(TEXT, b'x'))
    s('huge_declared_length', limit=limits['4096'], client=cf(BINARY, b'', length=1 << 40))
    # A violation on one side: the other side's later frames are dropped (discard).
    s('client_violation_backend_discards',
      client=cf(TEXT, b'ok') + frame(TEXT, b'unmasked'),
      backend=frame(TEXT, b'to client') + frame(PING, b'x') + frame(CLOSE, close_payload(1000)))
    s('backend_violation_client_discards', seed=0x1111,
      client=cf(TEXT, b'a' * 30) + cf(PING, b'p') + cf(TEXT, b'b' * 30) + cf(CLOSE),
      backend=frame(BINARY, b'z' * 10) + frame(3))


# ---- ws_handshake: request head lines, "--", response head lines --------------------------
def handshake():
    w = writer('ws_handshake')
    key = 'dGhlIHNhbXBsZSBub25jZQ=='

    def hs(name, request, response=None):
        text = 'GET /chat HTTP/1.1\nHost: example.com\n' + ''.join(l + '\n' for l in request)
        if response is not None:
            text += '--\nHTTP/1.1 101 Switching Protocols\n' + ''.join(l + '\n' for l in response)
        w(name, text.encode('latin-1'))
    req = ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Key: ' + key,
           'Sec-WebSocket-Version: 13']
    ok = ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Accept: *']
    hs('rfc_example', req, ok)
    hs('rfc_accept_literal', req, ok[:2] + ['Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo='])
    hs('tokens_across_repeated_fields',
       ['Upgrade: h2c', 'upgrade: WebSocket, foo/2', 'Connection: keep-alive',
        'connection: TE, , upgrade ,', 'Sec-WebSocket-Key: ' + key,
        'Sec-WebSocket-Version: 13'], ok)
    hs('connection_token_lookalike',
       ['Upgrade: websocket', 'Connection: upgrade-insecure, xupgrade', 'Sec-WebSocket-Key: ' + key,
        'Sec-WebSocket-Version: 13'])
    hs('upgrade_with_version', ['Upgrade: websocket/13', 'Connection: upgrade',
                                'Sec-WebSocket-Key: ' + key, 'Sec-WebSocket-Version: 13'])
    hs('subprotocols_offered_and_chosen',
       req + ['Sec-WebSocket-Protocol: chat, superchat', 'Sec-WebSocket-Protocol: v2.json'],
       ok + ['Sec-WebSocket-Protocol: v2.json'])
    hs('subprotocol_not_offered', req + ['Sec-WebSocket-Protocol: chat'],
       ok + ['Sec-WebSocket-Protocol: Chat'])
    hs('subprotocol_two_chosen', req + ['Sec-WebSocket-Protocol: a, b'],
       ok + ['Sec-WebSocket-Protocol: a', 'Sec-WebSocket-Protocol: b'])
    hs('subprotocol_none_offered', req, ok + ['Sec-WebSocket-Protocol: chat'])
    hs('extensions_with_params',
       req + ['Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, '
              'x-webkit-deflate-frame',
              'Sec-WebSocket-Extensions: foo; a="b, c"; d=e'],
       ok + ['Sec-WebSocket-Extensions: PerMessage-Deflate; server_no_context_takeover; '
             'client_max_window_bits=10',
             'Sec-WebSocket-Extensions: foo; q="x\\",y"'])
    hs('extension_not_offered', req + ['Sec-WebSocket-Extensions: permessage-deflate'],
       ok + ['Sec-WebSocket-Extensions: permessage-deflate, bar; x="1,2"'])
    hs('extension_quoted_pair_at_end', req + ['Sec-WebSocket-Extensions: a'],
       ok + ['Sec-WebSocket-Extensions: a; p="x\\"y"'])
    hs('extension_unterminated_quote', req + ['Sec-WebSocket-Extensions: a; p="x, b'],
       ok + ['Sec-WebSocket-Extensions: a; p="q'])
    hs('response_upgrade_twice', req, ok + ['Upgrade: websocket'])
    hs('response_accept_wrong', req, ok[:2] + ['Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo+'])
    hs('response_no_connection', req, [ok[0], ok[2]])
    hs('request_key_missing', req[:2] + req[3:])
    hs('request_key_twice', req + ['Sec-WebSocket-Key: ' + key])
    hs('request_key_stray_bits', req[:2] + ['Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=='] + req[3:])
    hs('request_key_short', req[:2] + ['Sec-WebSocket-Key: dGhlIHNhbXBsZQ=='] + req[3:])
    hs('request_version_8', req[:3] + ['Sec-WebSocket-Version: 8'])
    hs('request_version_missing', req[:3])
    hs('request_with_body', req + ['Content-Length: 5'])
    hs('request_chunked_body', req + ['Transfer-Encoding: chunked'])
    w('request_post', ('POST /chat HTTP/1.1\nHost: a\n' + ''.join(l + '\n' for l in req)).encode())
    w('request_http10', ('GET /chat HTTP/1.0\nHost: a\n' + ''.join(l + '\n' for l in req)).encode())


# ---- tls_stream: mode byte (0: raw bytes to a fresh server, 1: edits after a handshake) --
def tls_stream():
    import ssl
    w = writer('tls_stream')
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(incoming, outgoing, server_hostname='a.test')
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()  # a real ClientHello, as Python's OpenSSL sends it
    w('client-hello', b'\x00' + hello)
    w('client-hello-truncated', b'\x00' + hello[:len(hello) // 2])
    w('plaintext-http', b'\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n')
    w('oversized-record', b'\x00\x16\x03\x01\xff\xff' + b'a' * 64)
    w('sslv2-hello', b'\x00\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10' + b'\x00' * 37)
    # Mode 1: three record padding bytes, then edits (op, position hi, lo, value).
    w('clean-records', b'\x01\x05\x10\x20')
    w('flip-a-byte', b'\x01\x00\x00\x00\x00\x00\x05\x01')
    w('cut-mid-record', b'\x01\x00\x00\x00\x01\x00\x07')
    w('garbage-after', b'\x01\x00\x00\x00\x02\x00\x00\x10\x17')


# ---- proxy_protocol: the bytes a connection starts with ---------------------------------
def proxy_protocol():
    w = writer('proxy_protocol')
    sig = b'\r\n\r\n\x00\r\nQUIT\n'

    def v2(ver_cmd, fam, body):
        return sig + bytes([ver_cmd, fam]) + struct.pack('!H', len(body)) + body
    inet = bytes([10, 0, 0, 1, 127, 0, 0, 1]) + struct.pack('!HH', 40000, 8080)
    inet6 = bytes(15) + b'\x01' + b'\x20\x01\x0d\xb8' + bytes(11) + b'\x02' + \
        struct.pack('!HH', 1, 65535)
    req = b'GET / HTTP/1.1\r\nHost: a\r\n\r\n'
    w('v1-tcp4', b'PROXY TCP4 192.168.0.1 10.0.0.1 56324 443\r\n' + req)
    w('v1-tcp6', b'PROXY TCP6 2001:db8::1 ::1 0 65535\r\n' + req)
    w('v1-tcp6-longest', b'PROXY TCP6 ' + b'ffff:' * 7 + b'ffff ' + b'ffff:' * 7 +
      b'ffff 65535 65535\r\n')
    w('v1-unknown', b'PROXY UNKNOWN\r\n' + req)
    w('v1-unknown-107', b'PROXY UNKNOWN ' + b'x' * 91 + b'\r\n')
    w('v1-unknown-108', b'PROXY UNKNOWN ' + b'x' * 92 + b'\r\n')
    w('v1-port-65536', b'PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n')
    w('v1-leading-zero', b'PROXY TCP4 1.2.3.04 5.6.7.8 1 1\r\n')
    w('v1-bare-lf', b'PROXY TCP4 1.2.3.4 5.6.7.8 1 1\n')
    w('v1-double-space', b'PROXY  TCP4 1.2.3.4 5.6.7.8 1 1\r\n')
    w('v1-cut', b'PROXY TCP4 1.2.3.4 5.6')
    w('http', req)
    w('tls-hello-start', b'\x16\x03\x01\x00\xa5\x01')
    w('v2-inet', v2(0x21, 0x11, inet) + req)
    w('v2-inet6', v2(0x21, 0x21, inet6))
    w('v2-inet-tlvs', v2(0x21, 0x11, inet + b'\x04\x00\x02ab\x05\x00\x00'))
    w('v2-inet-tlv-overrun', v2(0x21, 0x11, inet + b'\x04\x00\x09ab'))
    w('v2-local', v2(0x20, 0x00, b'') + req)
    w('v2-local-any-family', v2(0x20, 0x77, b'abc'))
    w('v2-unspec', v2(0x21, 0x00, b''))
    w('v2-unix', v2(0x21, 0x31, b'/' * 216))
    w('v2-dgram', v2(0x21, 0x12, inet))
    w('v2-short-block', v2(0x21, 0x21, inet))
    w('v2-version-1', v2(0x11, 0x11, inet))
    w('v2-at-cap', v2(0x21, 0x11, inet + b'\x04' + struct.pack('!H', 4065) + b'z' * 4065))
    w('v2-over-cap', sig + b'\x21\x11' + struct.pack('!H', 4081))
    w('v2-cut-signature', sig[:7])
    # A NUL inside an address (the model once read it as the end of the address) and a
    # family byte the spec does not name (0x30: UNIX without a transport).
    w('v1-nul-in-address', b'PROXY TCP6 2001:db8::1 ::f\x001 0 65535\r\n')
    w('v2-unix-no-transport', v2(0x21, 0x30, b'/' * 216))


if __name__ == '__main__':
    chunked()
    utf8()
    stream()
    handshake()
    tls_stream()
    proxy_protocol()
