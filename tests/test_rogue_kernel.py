"""A kernel that sends forged, malformed and huge messages (tests/fixtures/kernelspecs/rogue,
a real ZeroMQ peer on the real connection file) cannot crash or stall the gateway: forged and
malformed messages are counted and dropped, good ones around them arrive, and another kernel on
the same gateway keeps working throughout."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Gateway, KernelWS, execute_ok

SPECS = Path(__file__).resolve().parent / "fixtures" / "kernelspecs"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("rogue"), args=["--kernelspec-dir", str(SPECS)]).start()
    yield g
    g.stop()


def test_forged_malformed_and_huge_messages(gw):
    honest = gw.post("api/kernels", json={"name": "python3"}, timeout=90)
    rogue = gw.post("api/kernels", json={"name": "rogue"}, timeout=90)
    assert honest.status_code == 201 and rogue.status_code == 201, (honest.text, rogue.text)
    try:
        with KernelWS(gw, rogue.json()["id"]) as ws:
            res = ws.execute("anything", timeout=120)
            texts = [m["content"]["text"] for m in res.of_type("stream")]
            assert "FORGED\n" not in texts, "a message signed with another key reached the client"
            small = [t for t in texts if len(t) < 100]
            assert small == ["after-forged\n", "after-malformed\n", "after-huge\n"], small
            assert [len(t) for t in texts if len(t) >= 100] == [(24 << 20) + 1], "the 24 MiB output arrives whole"
            assert res.reply["content"]["status"] == "ok"
        with KernelWS(gw, honest.json()["id"]) as ws:
            execute_ok(ws, "1 + 1")
        metrics = gw.get("metrics").text
        bad = [line for line in metrics.splitlines() if line.startswith("ganymede_kernel_bad_signatures")]
        assert bad and float(bad[0].split()[-1]) >= 1, bad
        assert "dropped" in gw.log_tail(300).lower() or "signature" in gw.log_tail(300).lower()
    finally:
        for r in (honest, rogue):
            if r.status_code == 201:
                gw.delete(f"api/kernels/{r.json()['id']}", timeout=60)
