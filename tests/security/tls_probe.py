"""TLS probe, run INSIDE a platform container (python3 stdlib only): JSON on stdin, JSON verdicts on stdout.

Input: {"host": ip, "port": n, "protocol": "postgres"|"tls", "ca": platform CA file,
        "foreign_dir": dir with ca.crt, client.crt, client.key from a foreign CA,
        "client_cert", "client_key": a client certificate of the platform CA on this host (or null)}
Verdicts: plaintext (refused|accepted), platform_server_cert (verified|failed), foreign_root (rejected|accepted),
          platform_client (accepted|refused): the positive control, the platform's client certificate (or none when
          the host has none) gets a protocol answer, foreign_client_cert (rejected|closed|accepted|inconclusive):
          "rejected" only on a TLS alert from the server; "closed" when it hung up without one (reset or EOF);
          a timeout or anything else is "inconclusive".
"""
import json
import socket
import ssl
import struct
import sys

TIMEOUT = 8


FOREIGN_CLIENT_ATTEMPTS = 5
LISTEN_FIRST = 1.0  # seconds a TLS (non-postgres) probe waits for the server before it sends a request


def startup(user="hc_tls_probe", db="postgres"):
    body = struct.pack("!I", 196608) + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in (("user", user), ("database", db))) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request(sock):
    sock.sendall(struct.pack("!II", 8, 80877103))
    return sock.recv(1)


class Alert(Exception):
    """The server answered with a TLS alert (certificate refused)."""


def read_answer(sock):
    """First byte of the server's answer to a startup message: b'R' (auth), b'E' (error) or b'' (closed).
    A TLS alert from the server raises Alert; other errors (timeout, reset) propagate as they are."""
    try:
        return sock.recv(1)
    except ssl.SSLError as exc:
        if "ALERT" in str(exc).upper():
            raise Alert(str(exc)) from exc
        raise


def plaintext(req):
    with socket.create_connection((req["host"], req["port"]), timeout=TIMEOUT) as sock:
        if req["protocol"] == "postgres":
            sock.sendall(startup())
            answer = read_answer(sock)
            # 'R' means the server went on to authentication without TLS: plaintext accepted
            return "accepted" if answer == b"R" else "refused"
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            data = sock.recv(64)
        except OSError:
            data = b""
        # a TLS-only server answers a plaintext request with nothing, or with a TLS alert record (0x15)
        return "refused" if not data or data[:1] == b"\x15" else "accepted"


def tls_session(req, cafile, cert=None, key=None):
    """Open TCP (+ SSLRequest for postgres), handshake; returns (ok, answer-or-error)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the address is an IP of a container; the chain is what is checked here
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile)
    if cert:
        ctx.load_cert_chain(cert, key)
    sock = socket.create_connection((req["host"], req["port"]), timeout=TIMEOUT)
    try:
        if req["protocol"] == "postgres" and ssl_request(sock) != b"S":
            return False, "server refused the SSLRequest"
        tls = ctx.wrap_socket(sock)
        try:
            if req["protocol"] == "postgres":
                tls.sendall(startup())
                answer = read_answer(tls)
            else:
                # Listen before speaking: a server that refuses the client certificate (TLS 1.3: after the
                # client's side of the handshake is done) sends its alert and closes. Had the probe sent bytes
                # already, they would sit unread on the server, its close would become a reset, and the reset can
                # overtake the alert. A server that accepted says nothing first (Redis, pgBackRest): then ask.
                tls.settimeout(LISTEN_FIRST)
                try:
                    early = read_answer(tls)
                except TimeoutError:
                    early = None
                tls.settimeout(TIMEOUT)
                if early is not None:
                    return True, early.decode("latin-1")
                tls.sendall(b"GET /version HTTP/1.0\r\n\r\n")
                answer = read_answer(tls)
            return True, answer.decode("latin-1")
        finally:
            tls.close()
    except Alert as exc:
        return False, f"alert: {exc}"
    except ssl.SSLError as exc:
        return False, ("alert: " if "ALERT" in str(exc).upper() else "SSLError: ") + str(exc)
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()


def main():
    req = json.load(sys.stdin)
    foreign = req["foreign_dir"]
    out = {"plaintext": plaintext(req)}
    ok, detail = tls_session(req, req["ca"])
    out["platform_server_cert"] = "verified" if ok else "failed"
    out["platform_server_cert_detail"] = detail
    ok, detail = tls_session(req, f"{foreign}/ca.crt")
    out["foreign_root"] = "accepted" if ok else "rejected"

    def protocol_answer(ok, detail):
        # postgres: an authentication request or an error message; tls: any bytes back
        return ok and (detail in ("R", "E") if req["protocol"] == "postgres" else detail != "")

    ok, detail = tls_session(req, req["ca"], req.get("client_cert"), req.get("client_key"))
    out["platform_client"] = "accepted" if protocol_answer(ok, detail) else "refused"
    out["platform_client_detail"] = detail
    out["platform_client_cert"] = req.get("client_cert")
    # the handshake may complete on the client side before the server's verdict arrives (TLS 1.3): the alert then
    # comes with the first read. Only an alert counts as a rejection; an answer means accepted. Some servers (Redis)
    # send the alert and reset at once, and the reset can overtake the alert: a hang-up is probed again, a bounded
    # number of times, until the alert is read; a server that never sends one stays "closed".
    for _attempt in range(FOREIGN_CLIENT_ATTEMPTS):
        ok, detail = tls_session(req, req["ca"], f"{foreign}/client.crt", f"{foreign}/client.key")
        if protocol_answer(ok, detail):
            verdict = "accepted"
        elif detail.startswith("alert: "):
            verdict = "rejected"
        elif ok and detail == "" or "ConnectionResetError" in detail or "EOF" in detail:
            verdict = "closed"  # the server hung up without an alert: a refusal only with server-side evidence
            continue
        else:
            verdict = "inconclusive"
        break
    out["foreign_client_cert"] = verdict
    out["foreign_client_cert_detail"] = detail
    print(json.dumps(out))


if __name__ == "__main__":
    main()
