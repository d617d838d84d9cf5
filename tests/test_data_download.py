"""download(): resume with HTTP Range tied to its source, length / content / checksum checks before the
atomic rename, checked redirects, time bounds, gdown wiring -- all on loopback."""
import hashlib
import http.server
import json
import math
import pickle
import re
import sys
import threading
import time
import types

import pytest

from infoenh.data import ChecksumError, UnknownChecksumWarning
from infoenh.data import checksums
from infoenh.data.download import (DownloadError, UnverifiedLengthWarning, _redirect_refusal, download,
                                   source_kind, why_not_a_pickle)

PAYLOAD = bytes(range(256)) * 2000  # 512,000 bytes
SUM = hashlib.sha256(PAYLOAD).hexdigest()
PICKLE = pickle.dumps({"train": {"audio": bytes(range(256)) * 400, "id": list(range(500))}}, protocol=4)
PICKLE_SUM = hashlib.sha256(PICKLE).hexdigest()
HTML = (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
        b"<body>Download quota exceeded for this file.</body></html>\n")


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        srv.if_ranges.append(self.headers.get("If-Range"))
        if self.path in srv.redirects:
            self.send_response(302)
            self.send_header("Location", srv.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/file.bin":
            self._serve_file()
        else:
            self.send_error(404)

    def _serve_file(self):
        # Read every setting of this request once, and consume the one-shot `cut_after`, before any
        # byte of the answer is sent. The client acts on the headers, so a test may change the
        # settings for its next request while this handler is still sending (or dropping) the body:
        # reading them after the headers let a finished request steal the next one's `cut_after`.
        cfg = self.server.settings_for_request(self.headers.get("Range"), self.headers.get("If-Range"))
        if cfg["unsatisfiable"]:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(cfg['data'])}")
            self.end_headers()
            return
        data, start = cfg["data"], cfg["start"]
        if start is not None:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            start = 0
            self.send_response(200)
        if cfg["etag"]:
            self.send_header("ETag", cfg["etag"])
        if cfg["last_modified"]:
            self.send_header("Last-Modified", cfg["last_modified"])
        if not cfg["close_delimited"]:  # HTTP/1.0 without a length: the body ends when the connection closes
            self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if self.server.after_headers is not None:  # a hook to delay this handler (a slow thread)
            self.server.after_headers()
        body = data[start:]
        if cfg["cut_after"] is not None:  # simulate a dropped connection
            body = body[:cfg["cut_after"]]
        self._send(body, cfg["trickle"])

    def _send(self, body, trickle):
        srv = self.server
        try:
            if trickle is None:
                self.wfile.write(body)
                self.wfile.flush()
                return
            for i in range(len(body)):  # one byte every `trickle` seconds
                if srv.stop.wait(trickle):
                    return
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
        except OSError:  # the client went away
            pass


class _Server(http.server.ThreadingHTTPServer):
    """The loopback server; tests set its attributes (payload, etag, cut_after, ...) between downloads."""

    def settings_for_request(self, rng, if_range):
        """One consistent snapshot of the settings for a /file.bin request; consumes ``cut_after``
        unless the answer is a 416 (which has no body to cut)."""
        with self.lock:
            data = self.payload
            same_file = if_range is None or if_range in (self.etag, self.last_modified)
            start = None
            if rng and self.honour_range and same_file:
                start = int(re.match(r"bytes=(\d+)-$", rng).group(1))
            unsatisfiable = start is not None and start >= len(data)
            cut = None
            if not unsatisfiable:
                cut, self.cut_after = self.cut_after, None
            return {"data": data, "start": start, "unsatisfiable": unsatisfiable, "etag": self.etag,
                    "last_modified": self.last_modified, "close_delimited": self.close_delimited,
                    "trickle": self.trickle, "cut_after": cut}


def _start_server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.payload, srv.ranges, srv.if_ranges, srv.cut_after, srv.honour_range = PAYLOAD, [], [], None, True
    srv.etag, srv.last_modified, srv.close_delimited, srv.trickle = '"v1"', None, False, None
    srv.redirects, srv.stop, srv.lock, srv.after_headers = {}, threading.Event(), threading.Lock(), None
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    srv.url = srv.base + "/file.bin"
    return srv


def _stop_server(srv):
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = _start_server()
    yield srv
    _stop_server(srv)


def _leave_part(dest, data, url, etag='"v1"'):
    """A .part as an interrupted run leaves it, with its record (DEST.part.json)."""
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(data)
    part.with_name(part.name + ".json").write_text(json.dumps(
        {"url": url, "etag": etag, "last_modified": None, "length": len(PAYLOAD)}))
    return part


def test_plain_download_with_sum(server, tmp_path):
    dest = tmp_path / "sub" / "file.bin"
    assert download(server.url, dest, sha256=SUM, quiet=True) == dest
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "sub" / "file.bin.part").exists()
    assert server.ranges == [None]
    # a second call finds the verified file and does not download again
    download(server.url, dest, sha256=SUM, quiet=True)
    assert server.ranges == [None]


def test_interrupt_then_resume_with_range(server, tmp_path):
    dest = tmp_path / "file.bin"
    part = tmp_path / "file.bin.part"
    server.cut_after = 200_000
    with pytest.raises(DownloadError, match="interrupted|ended after") as info:
        download(server.url, dest, sha256=SUM, quiet=True, chunk_size=8192)
    assert "run the same download again to resume" in str(info.value)
    assert not dest.exists() and part.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD)
    download(server.url, dest, sha256=SUM, quiet=True)
    assert server.ranges == [None, f"bytes={kept}-"] and server.if_ranges == [None, '"v1"']
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert not (tmp_path / "file.bin.part.json").exists()


def test_server_ignoring_range_restarts(server, tmp_path):
    dest = tmp_path / "file.bin"
    _leave_part(dest, b"garbage that must not be kept", server.url)
    server.honour_range = False
    download(server.url, dest, sha256=SUM, quiet=True)
    assert server.ranges == ["bytes=29-"] and dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_after_416_only_with_a_matching_sum(server, tmp_path):
    dest = tmp_path / "file.bin"
    _leave_part(dest, PAYLOAD, server.url)
    download(server.url, dest, sha256=SUM, quiet=True)
    assert dest.read_bytes() == PAYLOAD and server.ranges == [f"bytes={len(PAYLOAD)}-"]
    assert not (tmp_path / "file.bin.part.json").exists()


def test_no_resume_starts_over(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:1000])
    download(server.url, tmp_path / "file.bin", sha256=SUM, quiet=True, resume=False)
    assert server.ranges == [None]


def test_bad_checksum_leaves_no_file(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(ChecksumError, match="nothing was written"):
        download(server.url, dest, sha256="f" * 64, quiet=True)
    assert not dest.exists() and not (tmp_path / "file.bin.part").exists()


def test_sum_from_the_table(server, tmp_path, monkeypatch):
    monkeypatch.setitem(checksums.KNOWN_SHA256, "MOSI/Processed/file.bin", "e" * 64)
    dest = tmp_path / "MOSI" / "Processed" / "file.bin"
    with pytest.raises(ChecksumError):
        download(server.url, dest, quiet=True)
    assert not dest.exists()


def test_without_sum_warns_and_keeps(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.warns(UnknownChecksumWarning, match=SUM):
        download(server.url, dest, quiet=True)
    assert dest.read_bytes() == PAYLOAD


def test_existing_file_with_wrong_sum(tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumError, match="exists but"):
        download("http://127.0.0.1:9/file.bin", dest, sha256=SUM, quiet=True)


def test_http_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url.replace("file.bin", "nope"), tmp_path / "x", quiet=True)
    with pytest.raises(IsADirectoryError):
        download(server.url, tmp_path, quiet=True)


def test_source_kind():
    assert source_kind("https://example.org/a.pkl") == "http"
    assert source_kind("https://drive.google.com/file/d/1AbC/view") == "gdrive_url"
    assert source_kind("1a2B3c4D5e6F7g8H9i0J_-xyz") == "gdrive_id"
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        source_kind("ftp://host/file")
    with pytest.raises(ValueError, match="neither an http"):
        source_kind("not a/valid id")


def test_gdrive_uses_gdown_then_checks(tmp_path, monkeypatch):
    calls = []

    def fake_download(url=None, output=None, quiet=False, id=None, resume=False, fuzzy=False):
        calls.append({"url": url, "id": id, "output": output, "resume": resume})
        with open(output, "wb") as f:
            f.write(PAYLOAD)
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=fake_download))
    dest = tmp_path / "unaligned_50.pkl"
    download("1a2B3c4D5e6F7g8H9i0J", dest, sha256=SUM, quiet=True)
    assert dest.read_bytes() == PAYLOAD
    assert calls == [{"url": None, "id": "1a2B3c4D5e6F7g8H9i0J", "output": str(dest) + ".part", "resume": True}]
    dest2 = tmp_path / "b.pkl"
    with pytest.raises(ChecksumError):
        download("https://drive.google.com/file/d/XYZ/view", dest2, sha256="0" * 64, quiet=True)
    assert calls[-1]["url"].startswith("https://drive.google.com") and not dest2.exists()


def test_gdrive_failure_and_missing_gdown(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=lambda **kw: None))
    with pytest.raises(DownloadError, match="gdown could not fetch"):
        download("1a2B3c4D5e6F7g8H9i0J", tmp_path / "f.pkl", quiet=True)
    monkeypatch.setitem(sys.modules, "gdown", None)  # import gdown -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'infoenh\[download\]'"):
        download("1a2B3c4D5e6F7g8H9i0J", tmp_path / "f.pkl", quiet=True)


# ---- issue 13, item 3: downloads without a known sum must not accept wrong bytes ----

def test_stale_part_from_another_url_is_discarded(server, tmp_path, capsys):
    dest = tmp_path / "file.bin"
    _leave_part(dest, b"X" * 1000, "http://127.0.0.1:1/other.bin")
    with pytest.warns(UnknownChecksumWarning):
        download(server.url, dest)
    assert dest.read_bytes() == PAYLOAD and server.ranges == [None]
    assert "discarding" in capsys.readouterr().out
    # a .part with no record of its source is not continued either
    dest2 = tmp_path / "file2.bin"
    (tmp_path / "file2.bin.part").write_bytes(b"Y" * 1000)
    with pytest.warns(UnknownChecksumWarning):
        download(server.url, dest2)
    assert dest2.read_bytes() == PAYLOAD and server.ranges == [None, None]
    assert "no record of where it came from" in capsys.readouterr().out


def test_full_size_wrong_part_and_416_downloads_afresh(server, tmp_path):
    dest = tmp_path / "file.bin"
    _leave_part(dest, bytes(len(PAYLOAD)), server.url)  # right length, wrong bytes
    with pytest.warns(UnknownChecksumWarning, match=SUM):
        download(server.url, dest, quiet=True)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-", None]
    dest2 = tmp_path / "file2.bin"  # with a sum the wrong part is not taken as complete either
    _leave_part(dest2, bytes(len(PAYLOAD)), server.url)
    download(server.url, dest2, sha256=SUM, quiet=True)
    assert dest2.read_bytes() == PAYLOAD and server.ranges[2:] == [f"bytes={len(PAYLOAD)}-", None]


def test_truncated_body_keeps_part_and_resumes_with_if_range(server, tmp_path):
    server.payload, server.cut_after = PICKLE, 1000
    dest = tmp_path / "data.pkl"
    part = tmp_path / "data.pkl.part"
    with pytest.raises(DownloadError, match=f"ended after 1000 of {len(PICKLE)} bytes.*kept"):
        download(server.url, dest, quiet=True)
    assert part.stat().st_size == 1000 and not dest.exists()
    with pytest.warns(UnknownChecksumWarning, match=PICKLE_SUM):
        download(server.url, dest, quiet=True)
    assert server.ranges == [None, "bytes=1000-"] and server.if_ranges == [None, '"v1"']
    assert dest.read_bytes() == PICKLE


def test_expected_size_must_match(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match=f"has {len(PAYLOAD)} bytes, not the expected {len(PAYLOAD) + 1}"):
        download(server.url, dest, quiet=True, expected_size=len(PAYLOAD) + 1)
    assert not dest.exists()
    server.close_delimited, server.cut_after = True, 5000  # no length from the server: the listing's size counts
    with pytest.raises(DownloadError, match=f"ended after 5000 of {len(PAYLOAD)} bytes"):
        download(server.url, dest, quiet=True, expected_size=len(PAYLOAD))
    assert (tmp_path / "file.bin.part").stat().st_size == 5000 and not dest.exists()
    with pytest.raises(DownloadError, match="more than the 100 bytes expected"):
        download(server.url, dest, quiet=True, expected_size=100, resume=False)
    assert not (tmp_path / "file.bin.part").exists() and not dest.exists()


def test_server_fixture_reads_each_request_settings_before_its_headers(server, tmp_path):
    """The fixture itself: a handler still busy after its headers (a descheduled thread, under load)
    must not take the settings meant for the next request (this made the test above flaky)."""
    entered, release, stalled = threading.Event(), threading.Event(), []

    def stall():
        stalled.append(threading.current_thread())
        entered.set()
        release.wait(10)

    server.after_headers = stall
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="not the expected"):
        download(server.url, dest, quiet=True, expected_size=len(PAYLOAD) + 1)
    assert entered.wait(10)  # the first handler has sent its headers and is stalled
    server.after_headers = None
    server.close_delimited, server.cut_after = True, 5000
    release.set()
    stalled[0].join(10)  # the old handler is done before the next request
    with pytest.raises(DownloadError, match=f"ended after 5000 of {len(PAYLOAD)} bytes"):
        download(server.url, dest, quiet=True, expected_size=len(PAYLOAD))
    assert (tmp_path / "file.bin.part").stat().st_size == 5000 and not dest.exists()


def test_refused_restart_keeps_the_part_tied_to_its_old_source(server, tmp_path):
    dest = tmp_path / "file.bin"
    server.cut_after = 1000
    with pytest.raises(DownloadError):
        download(server.url, dest, quiet=True)
    server.payload, server.etag = PAYLOAD + b"more", '"v2"'  # changed: the server answers 200 with a new length
    with pytest.raises(DownloadError, match="not the expected"):
        download(server.url, dest, quiet=True, expected_size=len(PAYLOAD))
    record = json.loads((tmp_path / "file.bin.part.json").read_text())
    assert record["etag"] == '"v1"' and (tmp_path / "file.bin.part").read_bytes() == PAYLOAD[:1000]


def test_close_delimited_body_cut_short_is_refused(server, tmp_path):
    server.payload, server.close_delimited, server.cut_after = PICKLE, True, len(PICKLE) // 2
    dest = tmp_path / "data.pkl"
    with pytest.raises(DownloadError, match="incomplete pickle.*kept"):
        download(server.url, dest, quiet=True)
    assert not dest.exists() and (tmp_path / "data.pkl.part").stat().st_size == len(PICKLE) // 2
    server.etag, server.cut_after = None, 100  # nothing to resume against: the cut part is not kept
    with pytest.raises(DownloadError, match="incomplete pickle.*deleted.*no length"):
        download(server.url, dest, quiet=True, resume=False)
    assert list(tmp_path.iterdir()) == []
    server.payload = HTML
    with pytest.raises(DownloadError, match="HTML page"):
        download(server.url, dest, quiet=True, resume=False)
    assert not dest.exists() and not (tmp_path / "data.pkl.part").exists()
    server.payload = PICKLE  # complete, but its length could not be checked: kept with a warning
    with pytest.warns(UnverifiedLengthWarning, match="no length"), pytest.warns(UnknownChecksumWarning):
        download(server.url, dest, quiet=True)
    assert dest.read_bytes() == PICKLE


def test_redirects_to_other_schemes_are_refused(server, tmp_path):
    server.redirects = {"/to-file": "file:///etc/passwd", "/to-ftp": "ftp://127.0.0.1:1/file.bin"}
    for path, scheme in (("/to-file", "file:"), ("/to-ftp", "ftp:")):
        with pytest.raises(DownloadError, match=f"refused the HTTP 302 redirect .* {scheme}.*not http or https"):
            download(server.base + path, tmp_path / "x.pkl", quiet=True)
    assert list(tmp_path.iterdir()) == []
    assert _redirect_refusal("https://a.org/x", "http://a.org/x") == "it would downgrade https to unencrypted http"
    assert _redirect_refusal("http://a.org/x", "https://b.org/y") is None
    assert _redirect_refusal("https://a.org/x", "https://b.org/y") is None


def test_redirect_to_another_port_is_followed_and_logged(server, tmp_path, capsys):
    other = _start_server()
    try:
        server.redirects = {"/to-other": other.url}
        with pytest.warns(UnknownChecksumWarning):
            download(server.base + "/to-other", tmp_path / "file.bin")
        assert (tmp_path / "file.bin").read_bytes() == PAYLOAD and other.ranges == [None]
        assert f"redirect (HTTP 302): {server.base}/to-other -> {other.url}" in capsys.readouterr().out
    finally:
        _stop_server(other)


def test_redirect_loop_is_bounded(server, tmp_path):
    server.redirects = {"/loop": "/loop"}
    with pytest.raises(DownloadError, match="redirects .* did not lead to a file"):
        download(server.base + "/loop", tmp_path / "x.pkl", quiet=True)
    assert len(server.ranges) <= 11


def test_html_error_page_is_refused(server, tmp_path):
    server.payload = HTML
    dest = tmp_path / "unaligned_50.pkl"
    with pytest.raises(DownloadError, match=r"HTML page \(a login or quota page\?\), not a pickle"):
        download(server.url, dest, quiet=True)
    assert list(tmp_path.iterdir()) == []  # no dest, no .part, no record
    with pytest.raises(ChecksumError, match="the bytes are an HTML page"):
        download(server.url, dest, sha256=SUM, quiet=True)
    with pytest.warns(UnknownChecksumWarning):  # kind="any": the caller takes any bytes
        download(server.url, dest, quiet=True, kind="any")
    assert dest.read_bytes() == HTML


def test_existing_wrong_destination_with_sum_needs_overwrite(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumError, match="exists but.*overwrite=True"):
        download(server.url, dest, sha256=SUM, quiet=True)
    assert dest.read_bytes() == b"old" and server.ranges == []
    download(server.url, dest, sha256=SUM, quiet=True, overwrite=True)
    assert dest.read_bytes() == PAYLOAD


def test_existing_destination_without_sum_is_checked_by_content(server, tmp_path, capsys):
    dest = tmp_path / "unaligned_50.pkl"
    dest.write_bytes(HTML)
    with pytest.raises(DownloadError, match="exists but is an HTML page.*overwrite=True"):
        download(server.url, dest, quiet=True)
    assert dest.read_bytes() == HTML
    dest.write_bytes(PICKLE)
    with pytest.warns(UnknownChecksumWarning, match=PICKLE_SUM):
        download(server.url, dest)
    assert "already exists, verified by its content only" in capsys.readouterr().out
    download(server.url, dest, sha256=PICKLE_SUM)
    assert "already exists, verified by its SHA-256" in capsys.readouterr().out
    assert server.ranges == []


def test_if_range_sent_and_a_changed_file_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "file.bin"
    server.cut_after = 100_000
    with pytest.raises(DownloadError):
        download(server.url, dest, quiet=True)
    new = bytes(reversed(PAYLOAD))  # the file changed on the server: same length, new ETag
    server.payload, server.etag = new, '"v2"'
    with pytest.warns(UnknownChecksumWarning, match=hashlib.sha256(new).hexdigest()):
        download(server.url, dest, quiet=True)
    assert server.ranges == [None, "bytes=100000-"] and server.if_ranges == [None, '"v1"']
    assert dest.read_bytes() == new


def test_resume_uses_last_modified_or_the_length(server, tmp_path):
    server.etag, server.last_modified, server.cut_after = None, "Mon, 01 Jan 2024 00:00:00 GMT", 1000
    with pytest.raises(DownloadError):
        download(server.url, tmp_path / "a.bin", quiet=True)
    download(server.url, tmp_path / "a.bin", sha256=SUM, quiet=True)
    assert server.if_ranges == [None, "Mon, 01 Jan 2024 00:00:00 GMT"]
    server.last_modified, server.cut_after = None, 1000  # no validator: checked by the length only
    with pytest.raises(DownloadError):
        download(server.url, tmp_path / "b.bin", quiet=True)
    server.payload = PAYLOAD + b"more"  # the file grew: the 206's total differs, so it starts afresh
    download(server.url, tmp_path / "b.bin", sha256=hashlib.sha256(server.payload).hexdigest(), quiet=True)
    assert server.ranges[2:] == [None, "bytes=1000-", None] and server.if_ranges[2:] == [None, None, None]
    assert (tmp_path / "b.bin").read_bytes() == PAYLOAD + b"more"


def test_trickling_server_is_cut_by_total_timeout(server, tmp_path):
    server.payload, server.trickle = PICKLE[:200], 0.5
    dest = tmp_path / "data.pkl"
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"did not finish within total_timeout=1 s.*kept.*resume"):
        download(server.url, dest, quiet=True, timeout=30, total_timeout=1.0)
    assert time.monotonic() - t0 < 3.0
    assert (tmp_path / "data.pkl.part").exists() and not dest.exists()


def test_why_not_a_pickle(tmp_path):
    def check(data):
        path = tmp_path / "f"
        path.write_bytes(data)
        return why_not_a_pickle(path)

    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert check(pickle.dumps({"a": [1, 2.5, "x"], "b": b"\x00"}, protocol=proto)) is None
    assert check(PICKLE) is None
    assert check(b"").startswith("empty")
    assert check(HTML).startswith("an HTML page")
    assert check(b'  {"error": "quota exceeded"}').startswith("JSON")
    assert check(b"<?xml version='1.0'?><Error/>").startswith("an XML document")
    assert check(b"Not Found.") == "text, not a pickle: 'Not Found.'"  # 'N' and '.' are opcodes, yet not a pickle
    assert check(PICKLE[:-100]).startswith("an incomplete pickle")
    assert check(b"\x80\x09junk.").startswith("not a pickle this Python can read")
    assert check(b"\x1f\x8b\x08\x00junk").startswith("gzip-compressed data")
    assert check(b"\x00\x01\x02\x03.").startswith("not a pickle (it starts with the bytes 00 01 02 03")
    assert check(b"\x80\x04K\x01K\x02.").startswith("not a well-formed pickle")  # two items left on the stack


@pytest.mark.parametrize("kwargs, name", [
    ({"total_timeout": 0}, "total_timeout"), ({"total_timeout": math.nan}, "total_timeout"),
    ({"timeout": -1}, "timeout"), ({"expected_size": -1}, "expected_size"), ({"expected_size": 1.5}, "expected_size"),
    ({"expected_size": True}, "expected_size"), ({"kind": "zip"}, "kind"), ({"chunk_size": 0}, "chunk_size")])
def test_bad_options_are_refused_before_any_transfer(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        download("http://127.0.0.1:9/file.bin", tmp_path / "x.pkl", quiet=True, **kwargs)


def test_gdrive_content_is_checked_and_a_stale_part_dropped(tmp_path, monkeypatch):
    seen = []

    def fake_download(url=None, output=None, quiet=False, id=None, resume=False, fuzzy=False):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        with open(output, "wb") as f:
            f.write(HTML)
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=fake_download))
    dest = tmp_path / "unaligned_50.pkl"
    _leave_part(dest, b"from an http run", "http://127.0.0.1:1/x")
    with pytest.raises(DownloadError, match="HTML page"):
        download("1a2B3c4D5e6F7g8H9i0J", dest, quiet=True)
    assert seen == [[]] and list(tmp_path.iterdir()) == []


def test_resume_without_validator_or_sum_restarts_instead_of_splicing(server, tmp_path):
    """Issue 23 (7): no ETag, no Last-Modified, no SHA-256: a part kept from before is not continued
    (the file may have changed at the same length); the download restarts from byte 0."""
    server.etag, server.last_modified, server.cut_after = None, None, 100_000
    dest = tmp_path / "c.bin"
    with pytest.raises(DownloadError, match="kept"):
        download(server.url, dest, quiet=True)
    assert (tmp_path / "c.bin.part").stat().st_size == 100_000
    new = bytes(reversed(PAYLOAD))          # changed on the server, same length, and nothing says so
    server.payload = new
    with pytest.warns(UnknownChecksumWarning):
        download(server.url, dest, quiet=True)
    assert server.ranges == [None, None]    # the second request asked for the whole file
    assert dest.read_bytes() == new         # not PAYLOAD[:100000] + new[100000:]
