"""`infoenh data download mosi|mosei`: list MMSA's Drive folder along the path, fetch one file, verify it.

Only the network is replaced: a local HTTP server on 127.0.0.1 serves hand-made folder pages in
both of Drive's formats (tests/data/drive/embedded/: the embedded folder view, read first;
tests/data/drive/: the older _DRIVE_ivd page, the fallback; see the README; not recordings) and
the file bytes, and the URL templates (INFOENH_DRIVE_EMBED_URL / INFOENH_DRIVE_FOLDER_URL /
INFOENH_DRIVE_FILE_URL) point at it. ``server.embedded = {}`` leaves only the older page.
"""
import hashlib
import http.server
import re
import threading
import urllib.parse
from pathlib import Path

import pytest

from infoenh.cli import main
from infoenh.data import drive
from infoenh.data.checksums import KNOWN_SHA256

FIX = Path(__file__).parent / "data" / "drive"
ROOT = drive.MMSA_FOLDER_ID
PAGES = {  # folder id -> fixture page
    ROOT: "root.html",
    "FIXmosiFolder000000000001": "mosi.html",
    "FIXmosiProcessed000000001": "mosi_processed.html",
    "FIXmoseiFolder00000000001": "mosei.html",
    "FIXmoseiProcessed00000001": "mosei_processed.html",
}
EMBEDDED = {fid: "embedded/" + page for fid, page in PAGES.items()}
FILE_IDS = {"mosi_unaligned": "FIXmosiUnaligned000000001", "mosi_aligned": "FIXmosiAligned00000000001",
            "mosei_unaligned": "FIXmoseiUnaligned00000001", "mosei_aligned": "FIXmoseiAligned0000000001"}
ESCAPED = 'Raw \u2013 vid\u00e9os & "full" \'set\' <v2> [a=b] a\\b/c'


def _page(name):
    return (FIX / name).read_text(encoding="utf-8")


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if srv.status is not None:
            return self.send_error(srv.status)
        url = urllib.parse.urlsplit(self.path)
        m = re.fullmatch(r"/drive/folders/([\w-]+)", url.path)
        if url.path == "/embeddedfolderview":
            m = True
            page = srv.embedded.get(urllib.parse.parse_qs(url.query).get("id", [""])[0])
        elif m:
            page = srv.pages.get(m.group(1))
        if m:
            if page is None:
                return self.send_error(404)
            body = _page(page).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if url.path == "/uc":
            fid = urllib.parse.parse_qs(url.query).get("id", [""])[0]
            if fid not in srv.files:
                return self.send_error(404)
            data, start = srv.files[fid], 0
            # this request's cut is taken before anything is sent: a test that sets the next cut once
            # it has this answer's headers can never have it used up by this one
            cut, srv.cut_after = srv.cut_after, None
            rng = self.headers.get("Range")
            if rng:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if cut is not None:  # a dropped connection
                body = body[:cut]
            self.wfile.write(body)
            return
        self.send_error(404)


@pytest.fixture
def server(monkeypatch, tmp_path):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.pages, srv.files, srv.requests, srv.cut_after = dict(PAGES), {}, [], None
    srv.embedded, srv.status = dict(EMBEDDED), None
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    monkeypatch.setenv("INFOENH_DRIVE_FOLDER_URL", base + "/drive/folders/{id}")
    monkeypatch.setenv("INFOENH_DRIVE_EMBED_URL", base + "/embeddedfolderview?id={id}")
    monkeypatch.setenv("INFOENH_DRIVE_FILE_URL", base + "/uc?id={id}")
    monkeypatch.setenv("INFOENH_DATA", str(tmp_path / "data"))
    srv.base = base
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def pickle_bytes(tmp_path_factory):
    """A small SYNTHETIC testbed pickle standing in for MMSA's file (its sum is not the published one)."""
    from infoenh.data.synthetic import write_synthetic

    path = tmp_path_factory.mktemp("synth") / "synthetic.pkl"
    write_synthetic(path, sizes=(6, 3, 4), text_dim=4, audio_dim=2, vision_dim=3, text_len=6, audio_len=8,
                    vision_len=9, seed=3)
    return path.read_bytes()


def _folder_paths(srv):
    """The requests for _DRIVE_ivd folder pages."""
    return [p for p, _ in srv.requests if p.startswith("/drive/folders/")]


def _embedded_paths(srv):
    return [p for p, _ in srv.requests if p.startswith("/embeddedfolderview")]


def _embed(fid):
    return f"/embeddedfolderview?id={fid}"


# ------------------------------------------------------------------------------------------ parser

def test_parser_reads_names_ids_kinds_and_escapes():
    root = drive.parse_folder_page(_page("root.html"), ROOT)
    assert root.name == "MSA datasets - MMSA"        # only the trailing " - Google Drive" is cut
    assert [(c.name, c.id, c.kind) for c in root.children] == [
        ("MOSI", "FIXmosiFolder000000000001", "folder"),
        ("MOSEI", "FIXmoseiFolder00000000001", "folder"),
        ("SIMS", "FIXsimsFolder000000000001", "folder"),
        ("README.md", "FIXreadmeFile000000000001", "file"),
        (ESCAPED, "FIXescapedFile00000000001", "file"),
    ]
    assert all(c.parents == (ROOT,) for c in root.children)
    assert root.children[-1].mime_type == "application/zip"
    processed = drive.parse_folder_page(_page("mosi_processed.html"))
    assert {c.name: c.id for c in processed.children} == {"aligned_50.pkl": "FIXmosiAligned00000000001",
                                                          "unaligned_50.pkl": "FIXmosiUnaligned000000001"}
    assert not any(c.is_folder for c in processed.children)
    assert drive.parse_folder_page(_page("empty_folder.html")).children == []   # element 0 is null


def test_js_unescape_keeps_non_ascii_and_decodes_escapes():
    assert drive.js_unescape(r"\x22a\x27\/b\\c\u2013\u{1F600}\n") == "\"a'/b\\c\u2013\U0001F600\n"
    assert drive.js_unescape("vid\u00e9os \\x26") == "vid\u00e9os &"   # unicode_escape would give 'vidÃ©os'


def test_page_without_listing_is_a_clear_error():
    with pytest.raises(drive.DriveListingError, match="no file listing.*not shared publicly"):
        drive.parse_folder_page(_page("no_listing.html"), ROOT)


def test_folder_link_detection():
    assert drive.folder_id_from_url(f"https://drive.google.com/drive/folders/{ROOT}?usp=sharing") == ROOT
    assert drive.folder_id_from_url(f"https://drive.google.com/drive/u/0/folders/{ROOT}") == ROOT
    assert drive.folder_id_from_url("https://drive.google.com/file/d/1a2B3c4D5e6F7g8H9i0J/view") is None
    assert drive.folder_id_from_url("https://example.org/folders/1a2B3c4D5e6F7g8H9i0J") is None
    assert drive.folder_id_from_url("1a2B3c4D5e6F7g8H9i0J") is None


# ------------------------------------------------------------------------------------------ --list

def test_list_prints_the_path_and_downloads_nothing(server, capsys, tmp_path):
    server.embedded = {}                                  # the older page only (the fallback)
    assert main(["data", "download", "mosi", "--list"]) == 0
    out = capsys.readouterr().out
    assert _folder_paths(server) == [f"/drive/folders/{ROOT}", "/drive/folders/FIXmosiFolder000000000001",
                                     "/drive/folders/FIXmosiProcessed000000001"]
    assert not any(p.startswith("/uc") for p, _ in server.requests)   # nothing downloaded
    assert not (tmp_path / "data").exists()
    for name, fid in [("MOSI/", "FIXmosiFolder000000000001"), ("SIMS/", "FIXsimsFolder000000000001"),
                      ("README.md", "FIXreadmeFile000000000001"), (ESCAPED, "FIXescapedFile00000000001"),
                      ("Processed/", "FIXmosiProcessed000000001"), ("aligned_50.pkl", "FIXmosiAligned00000000001")]:
        assert re.search(re.escape(name) + r"\s+id " + fid, out), (name, out)
    assert re.search(r"unaligned_50\.pkl\s+id FIXmosiUnaligned000000001\s+<- this one", out)
    assert not re.search(r"aligned_50\.pkl\s+id FIXmosiAligned00000000001\s+<-", out)
    assert "MOSI/Processed/" in out and "sizes:" in out

    assert main(["data", "download", "mosi", "--variant", "aligned", "--list"]) == 0
    assert re.search(r" aligned_50\.pkl\s+id FIXmosiAligned00000000001\s+<- this one", capsys.readouterr().out)


def test_list_a_folder_link(server, capsys):
    server.embedded = {}
    assert main(["data", "download", "https://drive.google.com/drive/folders/FIXmoseiProcessed00000001",
                 "--list"]) == 0
    out = capsys.readouterr().out
    assert "unaligned_50.pkl" in out and "FIXmoseiAligned0000000001" in out
    assert _folder_paths(server) == ["/drive/folders/FIXmoseiProcessed00000001"]


# ------------------------------------------------------------------------------------------ download

def test_download_mosi_unaligned_to_default_path(server, pickle_bytes, tmp_path, capsys):
    server.embedded = {}
    server.files = {FILE_IDS["mosi_unaligned"]: pickle_bytes, FILE_IDS["mosi_aligned"]: b"wrong file"}
    digest = hashlib.sha256(pickle_bytes).hexdigest()
    assert main(["data", "download", "mosi", "--variant", "unaligned", "--sha256", digest, "--quiet"]) == 0
    dest = tmp_path / "data" / "MOSI" / "Processed" / "unaligned_50.pkl"
    assert dest.read_bytes() == pickle_bytes
    assert not dest.with_name("unaligned_50.pkl.part").exists()
    assert [p for p, _ in server.requests if not p.startswith("/embedded")] == [
        f"/drive/folders/{ROOT}", "/drive/folders/FIXmosiFolder000000000001",
        "/drive/folders/FIXmosiProcessed000000001", f"/uc?id={FILE_IDS['mosi_unaligned']}"]
    # the file is a loadable dataset (the synthetic marker is kept)
    from infoenh.data import load_mmsa
    assert load_mmsa(dest, verify=False).synthetic
    # a second run finds the verified file and fetches nothing
    n = len(server.requests)
    assert main(["data", "download", "mosi", "--sha256", digest]) == 0
    assert len(server.requests) == n and "already there" in capsys.readouterr().out


@pytest.mark.parametrize("dataset,variant", [("mosi", "aligned"), ("mosei", "unaligned"), ("mosei", "aligned")])
def test_download_other_variants_and_dest(server, dataset, variant, tmp_path):
    payloads = {fid: f"payload {key}".encode() * 50 for key, fid in FILE_IDS.items()}
    server.files = payloads
    want = payloads[FILE_IDS[f"{dataset}_{variant}"]]
    folder = tmp_path / "drive_folder"      # e.g. a mounted Google Drive folder: MMSA's tree goes below it
    assert main(["data", "download", dataset, "--variant", variant, "--dest", str(folder), "--quiet",
                 "--sha256", hashlib.sha256(want).hexdigest()]) == 0
    dest = folder / dataset.upper() / "Processed" / f"{variant}_50.pkl"
    assert dest.read_bytes() == want
    assert [p for p, _ in server.requests if p.startswith("/uc")] == [f"/uc?id={FILE_IDS[f'{dataset}_{variant}']}"]
    # a .pkl destination is used as the file itself
    single = tmp_path / "one.pkl"
    assert main(["data", "download", dataset, str(single), "--variant", variant, "--quiet",
                 "--sha256", hashlib.sha256(want).hexdigest()]) == 0
    assert single.read_bytes() == want


def test_default_sum_is_the_published_one_and_a_mismatch_leaves_nothing(server, pickle_bytes, tmp_path, capsys):
    server.files = {FILE_IDS["mosi_unaligned"]: pickle_bytes}
    assert main(["data", "download", "mosi"]) == 1
    err = capsys.readouterr().err
    assert KNOWN_SHA256["MOSI/Processed/unaligned_50.pkl"] in err           # checked against MMSA's sum
    assert hashlib.sha256(pickle_bytes).hexdigest() in err
    assert f"https://drive.google.com/drive/folders/{ROOT}" in err and "infoenh data check" in err
    processed = tmp_path / "data" / "MOSI" / "Processed"
    assert not (processed / "unaligned_50.pkl").exists() and not (processed / "unaligned_50.pkl.part").exists()
    # the published sum applies whatever the destination is called
    other = tmp_path / "elsewhere" / "mine.pkl"
    assert main(["data", "download", "mosi", str(other)]) == 1
    assert KNOWN_SHA256["MOSI/Processed/unaligned_50.pkl"] in capsys.readouterr().err
    assert list(other.parent.iterdir()) == []


def test_quota_page_instead_of_file_is_refused(server, tmp_path, capsys):
    server.files = {FILE_IDS["mosi_unaligned"]: b"<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title>"
                                                b"Too many users have viewed or downloaded this file recently</html>"}
    assert main(["data", "download", "mosi"]) == 1
    err = capsys.readouterr().err
    assert "quota" in err and "MOSI/Processed/unaligned_50.pkl" in err
    assert list((tmp_path / "data" / "MOSI" / "Processed").iterdir()) == []


def test_interrupted_file_download_resumes(server, pickle_bytes, tmp_path, capsys):
    server.files = {FILE_IDS["mosi_unaligned"]: pickle_bytes}
    digest = hashlib.sha256(pickle_bytes).hexdigest()
    cut = len(pickle_bytes) // 3
    server.cut_after = cut
    assert main(["data", "download", "mosi", "--sha256", digest, "--quiet"]) == 1
    dest = tmp_path / "data" / "MOSI" / "Processed" / "unaligned_50.pkl"
    part = dest.with_name("unaligned_50.pkl.part")
    assert not dest.exists() and part.stat().st_size == cut
    assert "resume" in capsys.readouterr().err
    assert main(["data", "download", "mosi", "--sha256", digest, "--quiet"]) == 0
    assert dest.read_bytes() == pickle_bytes and not part.exists()
    file_requests = [r for r in server.requests if r[0].startswith("/uc")]
    assert file_requests == [(f"/uc?id={FILE_IDS['mosi_unaligned']}", None),
                             (f"/uc?id={FILE_IDS['mosi_unaligned']}", f"bytes={cut}-")]


# ------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("source", [f"https://drive.google.com/drive/folders/{ROOT}?usp=sharing",
                                    "https://drive.google.com/drive/u/1/folders/FIXmosiFolder000000000001", ROOT])
def test_folder_where_a_file_is_expected(server, source, tmp_path, capsys):
    assert main(["data", "download", source, str(tmp_path / "out.pkl")]) == 1
    err = capsys.readouterr().err
    assert "is a Google Drive folder, not a file" in err
    assert "infoenh data download mosi --variant unaligned" in err and "file's id" in err
    assert server.requests == [] and not (tmp_path / "out.pkl").exists()


def test_missing_path_component_lists_what_is_there(server, tmp_path, capsys):
    server.embedded = {}
    server.pages["FIXmosiFolder000000000001"] = "mosi_without_processed.html"
    assert main(["data", "download", "mosi"]) == 1
    err = capsys.readouterr().err
    assert "no 'Processed' in MOSI" in err
    assert "Raw/, Features_v2/, label.csv" in err
    assert not any(p.startswith("/uc") for p, _ in server.requests)
    assert not (tmp_path / "data").exists()


def test_page_without_listing_gives_the_manual_route(server, capsys, tmp_path):
    server.embedded = {}
    server.pages[ROOT] = "no_listing.html"
    assert main(["data", "download", "mosei", "--variant", "aligned", "--dest", str(tmp_path / "gd")]) == 1
    err = capsys.readouterr().err
    assert "no file listing" in err and "not shared publicly" in err
    assert f"https://drive.google.com/drive/folders/{ROOT}" in err
    dest = tmp_path / "gd" / "MOSEI" / "Processed" / "aligned_50.pkl"
    assert "go to MOSEI/Processed/aligned_50.pkl" in err and f"infoenh data check {dest}" in err
    assert _folder_paths(server) == [f"/drive/folders/{ROOT}"] and len(server.requests) == 2


def test_http_error_on_a_folder_page(server, capsys):
    server.embedded = {}
    del server.pages["FIXmosiProcessed000000001"]
    assert main(["data", "download", "mosi", "--list"]) == 1
    captured = capsys.readouterr()
    assert "HTTP 404" in captured.err and "FIXmosiProcessed000000001" in captured.err
    assert "MOSI/" in captured.out and "Processed/" in captured.out   # what was listed before the failure


def test_legacy_url_form_still_works(server, tmp_path):
    payload = b"plain bytes" * 100
    server.files = {"someFileId0000000001": payload}
    dest = tmp_path / "x.bin"
    assert main(["data", "download", server.base + "/uc?id=someFileId0000000001", str(dest), "--quiet",
                 "--sha256", hashlib.sha256(payload).hexdigest()]) == 0
    assert dest.read_bytes() == payload
    assert main(["data", "download", server.base + "/uc?id=someFileId0000000001"]) == 1   # DEST required


def test_missing_message_points_at_the_command(tmp_path):
    from infoenh.data.paths import missing_message

    msg = missing_message(tmp_path / "MOSEI" / "Processed" / "aligned_50.pkl")
    assert "infoenh data download mosei --variant aligned" in msg


def test_a_folder_page_redirected_off_http_is_refused():
    """Folder pages go through the download module's checked redirects: no file:, no ftp:."""
    from infoenh.data.download import DownloadError

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DownloadError, match="refused the HTTP 302 redirect .* file:///etc/passwd"):
            drive.fetch_folder("abcdefghij0123456789", url_template=f"http://127.0.0.1:{srv.server_port}/folders/{{id}}")
    finally:
        srv.shutdown()


# ------------------------------------------------------------------- the embedded view (Drive today)

def test_embedded_parser_reads_names_ids_kinds():
    root = drive.parse_embedded_page(_page("embedded/root.html"), ROOT)
    assert root.name == "MSA datasets - MMSA" and root.page == "embedded view"
    assert [(c.name, c.id, c.kind) for c in root.children] == [
        ("MOSI", "FIXmosiFolder000000000001", "folder"),
        ("MOSEI", "FIXmoseiFolder00000000001", "folder"),
        ("SIMS", "FIXsimsFolder000000000001", "folder"),
        ("README.md", "FIXreadmeFile000000000001", "file"),
        ('Raw vidéos – full set & "v2" <old>.zip', "FIXescapedFile00000000001", "file"),
        ("Notes on the features", "FIXnotesDocument00000001", "file"),      # a Google Doc
    ]   # the "Open in Drive" link to the folder itself and the help link are not children
    spaces = drive.parse_embedded_page(_page("embedded/mosi_spaces.html"), "FIXmosiFolder000000000001")
    assert [c.name for c in spaces.children] == ["Processed", "my  notes (copy).txt", "情感 分析 données.csv"]
    empty = drive.parse_embedded_page(_page("embedded/empty_folder.html"), "FIXmosiProcessed000000001")
    assert empty.children == [] and empty.name == "Processed"


def test_embedded_view_is_read_first_and_alone(server, pickle_bytes, tmp_path, capsys):
    assert main(["data", "download", "mosi", "--list"]) == 0
    out = capsys.readouterr().out
    assert _embedded_paths(server) == [_embed(ROOT), _embed("FIXmosiFolder000000000001"),
                                       _embed("FIXmosiProcessed000000001")]
    assert _folder_paths(server) == []                    # the older page is not needed
    assert re.search(r"unaligned_50\.pkl\s+id FIXmosiUnaligned000000001\s+<- this one", out)
    assert "Raw vidéos – full set & \"v2\" <old>.zip" in out and "Notes on the features" in out
    server.files = {FILE_IDS["mosi_unaligned"]: pickle_bytes}
    assert main(["data", "download", "mosi", "--quiet", "--sha256", hashlib.sha256(pickle_bytes).hexdigest()]) == 0
    assert (tmp_path / "data" / "MOSI" / "Processed" / "unaligned_50.pkl").read_bytes() == pickle_bytes


def test_names_with_spaces_and_non_ascii_are_listed(server, capsys):
    server.embedded["FIXmosiFolder000000000001"] = "embedded/mosi_spaces.html"
    assert main(["data", "download", "mosi", "--list"]) == 0
    out = capsys.readouterr().out
    assert "my  notes (copy).txt" in out and "情感 分析 données.csv" in out


def test_embedded_view_missing_falls_back_to_the_folder_page(server, capsys):
    del server.embedded["FIXmosiProcessed000000001"]       # HTTP 404 on the embedded view of one level
    assert main(["data", "download", "mosi", "--list"]) == 0
    assert _folder_paths(server) == ["/drive/folders/FIXmosiProcessed000000001"]
    assert "<- this one" in capsys.readouterr().out


def _manual_route_in(err, tmp_path, key="MOSI/Processed/unaligned_50.pkl"):
    dest = tmp_path / "data" / key
    assert f"https://drive.google.com/drive/folders/{ROOT} (the folder https://github.com/thuiar/MMSA's README " \
           "links)" in err
    assert f"go to {key}" in err and f"put it at {dest}" in err and f"infoenh data check {dest}" in err
    assert len(err.strip().splitlines()) == 1


def test_empty_folder_says_so_with_the_manual_route(server, tmp_path, capsys):
    server.embedded["FIXmosiProcessed000000001"] = "embedded/empty_folder.html"
    assert main(["data", "download", "mosi"]) == 1
    err = capsys.readouterr().err
    assert "there is no 'unaligned_50.pkl' in MOSI/Processed" in err and "it is empty" in err
    _manual_route_in(err, tmp_path)
    assert not any(p.startswith("/uc") for p, _ in server.requests)


@pytest.mark.parametrize("page,says", [("embedded/signin.html", "sign-in page: the folder is not shared publicly"),
                                       ("embedded/ratelimit.html", "rate-limit page")])
def test_sign_in_and_rate_limit_pages(server, tmp_path, capsys, page, says):
    server.embedded[ROOT] = page
    server.pages[ROOT] = page                              # the older page answers the same
    assert main(["data", "download", "mosi"]) == 1
    err = capsys.readouterr().err
    assert err.count(says) == 2                            # both ways tried, both named
    _manual_route_in(err, tmp_path)
    assert not (tmp_path / "data").exists()


def test_http_429_says_wait(server, tmp_path, capsys):
    server.embedded, server.pages = {}, {}
    server.status = 429
    assert main(["data", "download", "mosi"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 429" in err and "rate-limiting; wait and retry" in err
    _manual_route_in(err, tmp_path)


def test_placed_by_hand_then_checked(server, tmp_path, capsys):
    """The manual route ends with `infoenh data check`, which compares with MMSA's published sum."""
    from infoenh.data.synthetic import write_synthetic

    dest = tmp_path / "data" / "MOSI" / "Processed" / "unaligned_50.pkl"
    dest.parent.mkdir(parents=True)
    write_synthetic(dest, sizes=(6, 3, 4), text_dim=4, audio_dim=2, vision_dim=3, text_len=6, audio_len=8,
                    vision_len=9, seed=3)
    import pickle as _p
    data = _p.loads(dest.read_bytes())
    data.pop("synthetic", None)                            # a file that claims to be MMSA's
    dest.write_bytes(_p.dumps(data, protocol=4))
    assert main(["data", "check", str(dest)]) == 1
    err = capsys.readouterr().err
    assert KNOWN_SHA256["MOSI/Processed/unaligned_50.pkl"] in err
