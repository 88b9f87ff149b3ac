"""The analysts' export: what leaves the database, read-only, pseudonymised, and the same numbers whether the
analysis reads the database or the export. (The push to the Hub: tests/test_push.py.)"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from study import analyze as A  # noqa: E402
from study import export as E  # noqa: E402
from study.store import ShownRow, Store  # noqa: E402

ARMS = {"A": "baseline", "B": "finetuned", "C": "stn", "D": "generative"}
SECRET_TEXT = "my name is Jane Roe and I live at 12 Elm Street"


def _session(store: Store, participant: str, *, complete: bool = True, ratings=(5, 8, 2, 6)) -> str:
    sid = store.create_session(participant, order_index=0, seed=0, assignments=ARMS,
                               source={"PROLIFIC_PID": participant, "STUDY_ID": "s1"})
    store.save_preference(sid, SECRET_TEXT, None, [], [("ab" * 32, "/srv/uploads/jane.png", 64, 64)])
    store.save_shown(sid, {L: [ShownRow(L, p, f"img/{arm}/{p}.jpg", "cd" * 32, "", 0.1) for p in range(1, 5)]
                           for L, arm in ARMS.items()})
    for (L, _), r in zip(ARMS.items(), ratings):
        store.answer_relevance_grid(sid, L, [1, 2] if r > 4 else [4])
        store.answer_rating(sid, L, r)
    store.answer_ranking(sid, {"A": 3, "B": 1, "C": 4, "D": 2})
    store.answer_feedback(sid, "B", "B looked nice")
    if complete:
        store.complete(sid)
    return sid


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "results" / "study.sqlite"
    store = Store(path, "demo")
    ids = [_session(store, "5f1e0c0ffee0000000000001"), _session(store, "5f1e0c0ffee0000000000002", ratings=(7, 9, 1, 4)),
           _session(store, "5f1e0c0ffee0000000000003", complete=False)]
    withdrawn = _session(store, "5f1e0c0ffee0000000000004")
    store.withdraw(withdrawn)
    store.close()
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_writes_the_long_table_sessions_and_feedback(db, tmp_path):
    out = tmp_path / "export"
    summary = E.export(db, out)
    assert sorted(p.name for p in summary.files) == sorted(E.FILES)
    long = pd.read_csv(out / "long.csv", keep_default_na=False, dtype=str)
    assert list(long.columns) == E.LONG_COLUMNS
    assert len(long) == 3 * 16 and summary.rows == 48  # completed + incomplete; the withdrawn left nothing
    first = long[(long["session"] == "S00001") & (long["letter"] == "B")]
    assert first["arm"].tolist() == ["finetuned"] * 4 and first["rating"].tolist() == ["8"] * 4
    assert first["relevant"].tolist() == ["1", "1", "0", "0"] and first["rank"].tolist() == ["1"] * 4
    sessions = pd.read_csv(out / "sessions.csv", dtype=str, keep_default_na=False)
    assert sessions["status"].tolist() == ["completed", "completed", "shown", "withdrawn"]
    assert sessions["participant"].tolist() == ["P0001", "P0002", "P0003", "P0004"]
    feedback = pd.read_csv(out / "feedback.csv")
    assert feedback[["session", "letter", "arm", "text"]].values.tolist() == [
        ["S00001", "B", "finetuned", "B looked nice"], ["S00002", "B", "finetuned", "B looked nice"],
        ["S00003", "B", "finetuned", "B looked nice"]]
    parquet = pd.read_parquet(out / "long.parquet")
    assert parquet["rating"].tolist() == pd.read_csv(out / "long.csv")["rating"].tolist()


def test_export_leaves_out_everything_that_identifies_a_person_or_opens_a_session(db, tmp_path):
    store = Store(db, "demo")
    secrets = [s.session_id for s in map(store.session, _ids(db))]
    secrets += [c for c in (store.session(s).completion_code for s in secrets) if c]
    store.close()
    out = tmp_path / "export"
    E.export(db, out)
    everything = b"".join((out / name).read_bytes() for name in E.FILES)
    for secret in secrets + ["5f1e0c0ffee", SECRET_TEXT, "jane.png", "PROLIFIC_PID", "STUDY_ID"]:
        assert secret.encode() not in everything, secret
    assert not list(out.glob("*" + E.TMP_SUFFIX))


def _ids(db: Path) -> list[str]:
    from study.schema import connect
    conn = connect(db, readonly=True)
    ids = [r[0] for r in conn.execute("SELECT session_id FROM sessions ORDER BY created_at")]
    conn.close()
    return ids


def test_export_reads_the_database_without_changing_it(db, tmp_path):
    before = _sha(db)
    E.export(db, tmp_path / "export")
    assert _sha(db) == before


def test_pseudonyms_stay_the_same_when_the_database_grows(db, tmp_path):
    E.export(db, tmp_path / "one")
    store = Store(db, "demo")
    _session(store, "5f1e0c0ffee0000000000001")  # a returning participant and a new one
    _session(store, "5f1e0c0ffee0000000000099")
    store.close()
    E.export(db, tmp_path / "two")
    one = pd.read_csv(tmp_path / "one" / "sessions.csv", dtype=str)
    two = pd.read_csv(tmp_path / "two" / "sessions.csv", dtype=str)
    assert two.iloc[:4][["session", "participant"]].equals(one[["session", "participant"]])
    assert two["participant"].tolist()[4:] == ["P0001", "P0005"]


def test_raw_ids_keep_the_real_ids_for_the_researchers_own_machine(db, tmp_path):
    E.export(db, tmp_path / "raw", raw_ids=True)
    sessions = pd.read_csv(tmp_path / "raw" / "sessions.csv", dtype=str)
    assert sessions["participant"].iloc[0] == "5f1e0c0ffee0000000000001"
    assert sessions["session"].tolist() == _ids(db)


def test_the_analysis_gives_the_same_numbers_from_the_export_as_from_the_database(db, tmp_path):
    E.export(db, tmp_path / "export")
    from_db = A.analyze(A.load(db), replicates=300, seed=0)
    for name in ("long.csv", "long.parquet"):
        from_export = A.analyze(A.load(tmp_path / "export" / name), replicates=300, seed=0)
        pd.testing.assert_frame_equal(from_export.figures, from_db.figures)
        pd.testing.assert_frame_equal(from_export.pairwise, from_db.pairwise)
        assert from_export.exclusions() == from_db.exclusions() == {"withdrawn": 1, "incomplete": 1}


def test_export_refuses_a_folder_that_contains_the_database_and_a_missing_database(db, tmp_path):
    with pytest.raises(ValueError, match="contains the database"):
        E.export(db, db.parent)
    with pytest.raises(ValueError, match="contains the database"):
        E.export(db, tmp_path)
    with pytest.raises(FileNotFoundError, match="no study database"):
        E.export(tmp_path / "nothing.sqlite", tmp_path / "out")


def test_export_command(db, tmp_path, capsys):
    assert E.main(["--db", str(db)]) == 0
    assert "exported 4 sessions" in capsys.readouterr().out
    assert (db.parent / "export" / "long.parquet").is_file()
    assert E.main(["--db", str(db), "--study", "x.toml"]) == 2
    assert "either --study or --db" in capsys.readouterr().err
