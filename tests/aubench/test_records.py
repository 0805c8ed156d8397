"""The typed result record and its validating loader."""
import json
import warnings

import pytest

from aubench import RecordError
from aubench.records import RECORD_SCHEMA_VERSION, load_record, load_records, migrate_records

COMMITTED = next(__import__("pathlib").Path(__file__).resolve().parents[2].joinpath("leaderboard", "records")
                 .rglob("record.json"))


def write(tmp_path, data, name="a"):
    path = tmp_path / name / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def good():
    return json.loads(COMMITTED.read_text())


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("per_au"), r"missing fields \['per_au'\]"),
    (lambda d: d.update(extra=1), r"unknown fields \['extra'\]"),
    (lambda d: d.update(seed="abc"), r"field 'seed' is 'abc', expected int"),
    (lambda d: d.update(f1_avg=float("nan")), "f1_avg is nan"),
    (lambda d: d.update(schema_version=99), "record schema 99"),
])
def test_a_bad_record_is_refused_naming_the_file_and_the_field(tmp_path, good, change, message):
    change(good)
    path = write(tmp_path, good)
    with pytest.raises(RecordError, match=message) as err:
        load_record(path)
    assert str(path) in str(err.value)


def test_a_corrupt_record_is_skipped_with_a_warning_and_the_others_load(tmp_path, good):
    write(tmp_path, good, "ok")
    bad = write(tmp_path, good, "bad")
    bad.write_text("{not json")
    with pytest.raises(RecordError):
        load_records(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_records(tmp_path, strict=False)
    assert len(records) == 1 and str(bad) in str(caught[0].message)


def test_schema_1_records_are_migrated_in_memory_and_on_request(tmp_path, good):
    good.pop("versions", None)
    good["schema_version"] = 1
    path = write(tmp_path, good)
    rec = load_record(path)
    assert rec.schema_version == RECORD_SCHEMA_VERSION and rec.versions == {"aubench": good["environment"]["aubench"]}
    assert migrate_records(tmp_path) == 1 and json.loads(path.read_text())["schema_version"] == RECORD_SCHEMA_VERSION
    assert migrate_records(tmp_path) == 0
