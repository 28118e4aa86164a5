"""Tests for sdxl_breeder.store: real SQLite and real safetensors files in a temporary folder."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from sdxl_breeder.model.genome import Genome, GenomeError, breed
from sdxl_breeder.store import NotFound, Store, StoreFull
from sdxl_breeder.walks.paths import WalkError
from sdxl_breeder.walks.walkfile import Walk, scripted_walk

CORNERS: list[Any] = [{"prompt": "a"}, {"prompt": "b"}, {"genome": "0123456789abcdef"}, {"prompt": "d"}]
BAD_IDS: list[Any] = ["../../etc/passwd", "ABCDEF0123456789", "", "0123456/89abcdef", "0123456789abcde",
                      "0123456789abcdef0", None, 1234567890123456, b"0123456789abcdef"]


def make_genome(prompt: str = "a cat", created: float | None = None, **kw: Any) -> Genome:
    extra = {} if created is None else {"created": created}
    kw.setdefault("pool", ((3, 1.0),))
    return Genome(embeds=(torch.randn(77, 32), torch.randn(77, 64)), length=2, prompt=prompt, **extra, **kw)


def make_walk(seconds: float = 1.0) -> Walk:
    return scripted_walk("line", CORNERS, seconds=seconds, fps=4)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "data")
    yield s
    s.close()


def test_genome_round_trip(store: Store) -> None:
    g = make_genome(seed=7, mutation=0.25)
    info = store.put_genome(g)
    assert (store.genome_dir / f"{g.id}.safetensors").is_file()
    assert info["id"] == g.id and info["prompt"] == "a cat" and info["children"] == []
    assert info["created"] == g.created and info["seed"] == 7 and info["mutation"] == 0.25
    assert info["length"] == 2 and info["widths"] == [32, 64] and info["has_thumbnail"] is False
    assert info["pool"] == [[3, 1.0]]
    back = store.get_genome(g.id)
    assert back.metadata() == g.metadata()
    for a, b in zip(back.embeds, g.embeds, strict=True):
        assert torch.equal(a, b)
    assert store.has_genome(g.id) and not store.has_genome("0123456789abcdef")
    assert store.counts() == {"genomes": 1, "walks": 0}


def test_schema_version_and_wal(store: Store) -> None:
    conn = sqlite3.connect(store.data_dir / "breeder.sqlite3")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_version_1_gallery_learns_where_its_genomes_pool(tmp_path: Path) -> None:
    # a data dir written before the pool column: the rows get it from their files on open
    s = Store(tmp_path / "data")
    single, blend = make_genome("one"), make_genome("two", pool=((3, 0.25), (5, 0.75)))
    s.put_genome(single)
    s.put_genome(blend)
    s.close()
    conn = sqlite3.connect(tmp_path / "data" / "breeder.sqlite3")
    with conn:
        conn.execute("ALTER TABLE genomes DROP COLUMN pool")
        conn.execute("PRAGMA user_version=1")
    conn.close()
    s = Store(tmp_path / "data")
    try:
        assert s.genome_info(single.id)["pool"] == [[3, 1.0]]
        assert s.genome_info(blend.id)["pool"] == [[3, 0.25], [5, 0.75]]
    finally:
        s.close()


def test_list_newest_first_with_paging(store: Store) -> None:
    genomes = [make_genome(f"p{i}", created=1000.0 + i) for i in range(5)]
    twin = make_genome("twin", created=1004.0)  # same time as the newest: ties go by id
    for g in [*genomes, twin]:
        store.put_genome(g)
    newest = sorted([genomes[4].id, twin.id])
    expected = [*newest, *(g.id for g in reversed(genomes[:4]))]
    assert [i["id"] for i in store.list_genomes()] == expected
    assert [i["id"] for i in store.list_genomes(limit=2)] == expected[:2]
    assert [i["id"] for i in store.list_genomes(limit=2, offset=3)] == expected[3:5]
    assert store.list_genomes(offset=10) == []
    assert store.list_genomes(limit=0) == []
    with pytest.raises(ValueError):
        store.list_genomes(limit=-1)
    with pytest.raises(ValueError):
        store.list_genomes(offset=-1)


def test_lineage_and_delete(store: Store) -> None:
    a, b = make_genome("a", created=1.0), make_genome("b", created=2.0)
    child = breed(a, b, seed=3)
    for g in (a, b, child):
        store.put_genome(g)
    assert store.genome_info(child.id)["parents"] == [a.id, b.id]
    assert store.genome_info(a.id)["children"] == [child.id]
    assert store.genome_info(b.id)["children"] == [child.id]

    store.delete_genome(a.id)
    assert not (store.genome_dir / f"{a.id}.safetensors").exists()
    with pytest.raises(NotFound) as e:
        store.get_genome(a.id)
    assert str(e.value) == f"no genome {a.id}"
    for call in (store.genome_info, store.thumbnail, store.delete_genome):
        with pytest.raises(NotFound):
            call(a.id)
    assert not store.has_genome(a.id)
    assert store.genome_info(child.id)["parents"] == [a.id, b.id]  # lineage is history
    assert store.get_genome(child.id).parents == (a.id, b.id)
    # a deleted child leaves its parents' children lists
    store.delete_genome(child.id)
    assert store.genome_info(b.id)["children"] == []
    assert store.counts()["genomes"] == 1


def test_reput_updates_and_keeps_thumbnail(store: Store) -> None:
    g = make_genome()
    store.put_genome(g, thumbnail=b"\xff\xd8jpeg")
    info = store.put_genome(g)  # saving the same genome again must not drop its thumbnail
    assert info["has_thumbnail"] and store.thumbnail(g.id) == b"\xff\xd8jpeg"
    assert len(store.list_genomes()) == 1


def test_restart_lists_same_gallery(tmp_path: Path) -> None:
    s = Store(tmp_path)
    parent = make_genome("p", created=1.0)
    child = breed(parent, make_genome("q", created=2.0), seed=1)
    for g in (parent, child):
        s.put_genome(g, thumbnail=b"thumb")
    walk_info = s.put_walk(make_walk(), name="loop", source="cli")
    genomes, walks = s.list_genomes(), s.list_walks()
    s.close()
    with Store(tmp_path) as again:
        assert again.list_genomes() == genomes
        assert again.list_walks() == walks == [walk_info]
        assert again.genome_info(parent.id)["children"] == [child.id]
        assert again.thumbnail(child.id) == b"thumb"
        assert torch.equal(again.get_genome(child.id).embeds[1], child.embeds[1])
        assert again.counts() == {"genomes": 2, "walks": 1}


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_ids_are_not_found(store: Store, bad: Any) -> None:
    store.put_genome(make_genome())
    for call in (store.get_genome, store.genome_info, store.thumbnail, store.delete_genome,
                 store.get_walk, store.walk_info, store.delete_walk):
        with pytest.raises(NotFound):
            call(bad)
    with pytest.raises(NotFound):
        store.set_thumbnail(bad, b"x")
    assert store.has_genome(bad) is False
    assert store.counts()["genomes"] == 1


def test_put_rejects_invalid_genome_id(store: Store) -> None:
    with pytest.raises(GenomeError):
        store.put_genome(make_genome(id="../evil"))
    assert list(store.genome_dir.iterdir()) == []


def test_thumbnails(store: Store) -> None:
    g = make_genome()
    store.put_genome(g)
    assert store.thumbnail(g.id) is None
    store.set_thumbnail(g.id, b"\xff\xd8\xff first")
    store.set_thumbnail(g.id, b"\xff\xd8\xff second")
    assert store.thumbnail(g.id) == b"\xff\xd8\xff second"
    assert store.genome_info(g.id)["has_thumbnail"] is True
    with pytest.raises(NotFound):
        store.set_thumbnail("0123456789abcdef", b"x")
    with pytest.raises(NotFound):
        store.thumbnail("0123456789abcdef")
    with pytest.raises(TypeError):
        store.set_thumbnail(g.id, "not bytes")  # type: ignore[arg-type]


def test_walks_round_trip_list_delete(store: Store) -> None:
    w1, w2 = make_walk(1.0), make_walk(2.0)
    i1 = store.put_walk(w1, name="first")
    i2 = store.put_walk(w2)
    assert set(i1) == {"id", "name", "source", "created", "points", "seconds"}
    assert i1["name"] == "first" and i1["source"] == "api" and i2["name"] is None
    assert i1["points"] == len(w1.points) and i1["seconds"] == pytest.approx(w1.duration)
    back = store.get_walk(i1["id"])
    assert back.to_json() == w1.to_json() and back == w1
    assert store.walk_info(i2["id"]) == i2
    listed = store.list_walks()
    assert listed == sorted([i1, i2], key=lambda i: (-i["created"], i["id"]))
    assert store.list_walks(limit=1, offset=1) == listed[1:]
    store.delete_walk(i1["id"])
    with pytest.raises(NotFound):
        store.get_walk(i1["id"])
    with pytest.raises(NotFound):
        store.delete_walk(i1["id"])
    assert store.counts() == {"genomes": 0, "walks": 1}


def test_put_walk_validates(store: Store) -> None:
    bad = make_walk()
    bad.blend = "cubic"
    with pytest.raises(WalkError):
        store.put_walk(bad)
    with pytest.raises(WalkError):
        store.put_walk(make_walk(), name="x" * 1000)
    assert store.counts()["walks"] == 0


def test_missing_file_is_skipped_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Store(tmp_path)
    kept, lost = make_genome("kept"), make_genome("lost")
    s.put_genome(kept)
    s.put_genome(lost)
    s.close()
    (tmp_path / "genomes" / f"{lost.id}.safetensors").unlink()
    with caplog.at_level(logging.WARNING, logger="sdxl_breeder.store"):
        s = Store(tmp_path)
    try:
        assert any(lost.id in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        assert [i["id"] for i in s.list_genomes()] == [kept.id]
        assert s.counts()["genomes"] == 1 and not s.has_genome(lost.id)
        with pytest.raises(NotFound):
            s.get_genome(lost.id)
        with pytest.raises(NotFound):
            s.genome_info(lost.id)
        s.delete_genome(lost.id)  # the orphaned row can still be cleaned up
        with pytest.raises(NotFound):
            s.delete_genome(lost.id)
    finally:
        s.close()


def test_file_vanishing_while_running(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    g = make_genome()
    store.put_genome(g)
    (store.genome_dir / f"{g.id}.safetensors").unlink()
    with caplog.at_level(logging.WARNING, logger="sdxl_breeder.store"), pytest.raises(NotFound):
        store.get_genome(g.id)
    assert store.list_genomes() == [] and not store.has_genome(g.id)
    store.put_genome(g)  # putting it back makes it visible again
    assert store.has_genome(g.id) and store.get_genome(g.id).id == g.id


def test_stray_tmp_files_removed_at_startup(tmp_path: Path) -> None:
    Store(tmp_path).close()
    stray = tmp_path / "genomes" / ".tmp-abc123.safetensors"
    stray.write_bytes(b"half a genome")
    other = tmp_path / "genomes" / "notes.txt"
    other.write_text("not ours to remove")
    Store(tmp_path).close()
    assert not stray.exists() and other.exists()


def test_concurrent_puts_all_land(store: Store) -> None:
    made: list[list[Genome]] = [[make_genome(f"t{t}-{i}") for i in range(20)] for t in range(4)]
    errors: list[BaseException] = []

    def worker(genomes: list[Genome]) -> None:
        try:
            for g in genomes:
                store.put_genome(g, thumbnail=g.id.encode())
                store.list_genomes(limit=5)  # reads interleave with other threads' writes
        except BaseException as e:  # surfaced below: a thread's exception would be lost
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(gs,)) for gs in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = {g.id for gs in made for g in gs}
    assert {i["id"] for i in store.list_genomes(limit=1000)} == ids
    assert store.counts()["genomes"] == 80
    assert all(store.thumbnail(i) == i.encode() for i in ids)
    assert not list(store.genome_dir.glob(".tmp-*"))


def test_notfound_message_is_plain() -> None:
    assert str(NotFound("no genome 0123456789abcdef")) == "no genome 0123456789abcdef"
    assert isinstance(NotFound("x"), KeyError)


def test_find_prompt_returns_the_newest_plain_genome(tmp_path):
    import time as _time

    with Store(tmp_path) as store:
        first = Genome(embeds=(torch.randn(77, 32), torch.randn(77, 64)), pool=((3, 1.0),), length=2, prompt="a cat")
        store.put_genome(first)
        later = Genome(embeds=first.embeds, pool=first.pool, length=2, prompt="a cat", created=_time.time() + 5)
        store.put_genome(later)
        kept = Genome(embeds=first.embeds, pool=first.pool, length=2, prompt="a dog", parents=(first.id,))
        store.put_genome(kept)
        assert store.find_prompt("a cat") == later.id
        assert store.find_prompt("a dog") is None  # a labelled keep is not a prompt genome
        assert store.find_prompt("nothing") is None


def test_orphan_genome_files_are_swept_at_startup(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A crash between a genome's file and its row (or in a delete, between row and file) leaves a
    file no row names: nobody was told about it, so the next start removes it."""
    with Store(tmp_path) as s:
        kept = make_genome("kept")
        s.put_genome(kept)
    orphan = make_genome("never acknowledged")
    orphan.save(tmp_path / "genomes" / f"{orphan.id}.safetensors")  # the file, then the crash
    other = tmp_path / "genomes" / "notes.txt"
    other.write_text("not ours to remove")
    with caplog.at_level(logging.INFO, logger="sdxl_breeder.store"), Store(tmp_path) as s:
        assert not (tmp_path / "genomes" / f"{orphan.id}.safetensors").exists()
        assert any(orphan.id in r.getMessage() for r in caplog.records)
        assert s.has_genome(kept.id) and s.get_genome(kept.id).id == kept.id
        assert other.exists()
        assert s.size_bytes() == _folder_bytes(tmp_path)


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_store_size_cap_refuses_new_genomes_and_walks(tmp_path: Path) -> None:
    with Store(tmp_path) as s:
        s.put_genome(make_genome("first"))
        s.put_walk(make_walk())
        assert s.size_bytes() == _folder_bytes(tmp_path)
    room = make_genome("x").embeds[0].numel() * 4 * 6  # a few genomes' worth
    with Store(tmp_path, max_bytes=_folder_bytes(tmp_path) + room) as s:
        stored = 1
        with pytest.raises(StoreFull) as info:
            for i in range(100):
                s.put_genome(make_genome(f"g{i}"))
                stored += 1
        assert 1 < stored < 100
        assert "max_store_bytes" in str(info.value) and "delete" in str(info.value)
        files = sorted(s.genome_dir.iterdir())
        assert len(files) == stored == s.counts()["genomes"]  # the refused genome left nothing behind
        with pytest.raises(StoreFull):
            s.put_walk(make_walk())
        assert s.counts()["walks"] == 1
        for info in s.list_genomes()[:2]:  # deleting makes room again
            s.delete_genome(info["id"])
        s.put_genome(make_genome("fits again"))
        assert s.size_bytes() == _folder_bytes(tmp_path)
