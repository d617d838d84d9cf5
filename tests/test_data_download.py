"""download(): resume with HTTP Range, checksum before the atomic rename, gdown wiring -- all on loopback."""
import hashlib
import http.server
import re
import sys
import threading
import types

import pytest

from infoenh.data import ChecksumError, UnknownChecksumWarning
from infoenh.data import checksums
from infoenh.data.download import DownloadError, download, source_kind

PAYLOAD = bytes(range(256)) * 2000  # 512,000 bytes
SUM = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        if self.path != "/file.bin":
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        srv.ranges.append(rng)
        data, start = srv.payload, 0
        if rng and srv.honour_range:
            start = int(re.match(r"bytes=(\d+)-$", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if srv.cut_after is not None:  # simulate a dropped connection
            body = body[:srv.cut_after]
            srv.cut_after = None
        self.wfile.write(body)
        self.wfile.flush()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.payload, srv.ranges, srv.cut_after, srv.honour_range = PAYLOAD, [], None, True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/file.bin"
    yield srv
    srv.shutdown()
    srv.server_close()


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
    assert server.ranges == [None, f"bytes={kept}-"]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_server_ignoring_range_restarts(server, tmp_path):
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"garbage that must not be kept")
    server.honour_range = False
    download(server.url, dest, sha256=SUM, quiet=True)
    assert server.ranges == ["bytes=29-"] and dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_after_416(server, tmp_path):
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD)
    download(server.url, dest, sha256=SUM, quiet=True)
    assert dest.read_bytes() == PAYLOAD and server.ranges == [f"bytes={len(PAYLOAD)}-"]


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
