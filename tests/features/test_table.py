"""Reading flat one-row-per-lead exports: delimiters, missing markers, type inference, identifiers, bad
files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from leadscore.features.loading import DataError
from leadscore.features.table import flat_values, read_table


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Lead ID": [f"L{i:05d}" for i in range(n)],
            "Number": np.arange(1000, 1000 + n),
            "Visits": rng.integers(0, 40, n),
            "Minutes": np.round(rng.gamma(2, 30, n), 1),
            "Rating": rng.integers(1, 4, n),  # 3 whole-number values: a code
            "Source": rng.choice(["Google", "Direct", "Referral", "Select"], n),
            "Signed up": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Newsletter": ["No"] * n,
            "Converted": rng.integers(0, 2, n),
        }
    )


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed_and_bom_tolerated(tmp_path, sep):
    # given the same export written with a delimiter and a UTF-8 byte-order mark
    df = _frame()
    path = tmp_path / "leads.csv"
    path.write_bytes(b"\xef\xbb\xbf" + df.to_csv(index=False, sep=sep).encode())
    # when it is read
    t = read_table(path, "Converted")
    # then every column is found (the first one without the BOM) and every labelled row is kept
    assert set(t.columns) == set(df.columns) - {"Converted"}
    assert len(t.label) == len(df)
    assert t.label.tolist() == df["Converted"].tolist()


def test_types_identifiers_constants_and_missing_markers(tmp_path):
    # given an export with ids, numbers, a code column, text with "Select", a date and a constant
    df = _frame()
    df["Visits"] = df["Visits"].astype(object)
    df.loc[:9, "Visits"] = "NA"
    path = tmp_path / "leads.csv"
    df.to_csv(path, index=False)
    # when it is read with the default missing markers
    t = read_table(path, "Converted")
    kinds = {c: i.kind for c, i in t.columns.items()}
    # then each column gets the kind a user would expect
    assert kinds == {
        "Lead ID": "identifier",
        "Number": "identifier",
        "Visits": "numeric",
        "Minutes": "numeric",
        "Rating": "categorical",
        "Source": "categorical",
        "Signed up": "datetime",
        "Newsletter": "constant",
    }
    # and only numeric and categorical columns are features
    assert t.features == ["Visits", "Minutes", "Rating", "Source"]
    values = t.values()
    # and "NA" and "Select" are missing, not values
    assert np.isnan(values["Visits"][:10]).all() and not np.isnan(values["Visits"][10:]).any()
    assert None in set(values["Source"]) and "Select" not in set(values["Source"])
    assert t.columns["Source"].n_missing == int((df["Source"] == "Select").sum())


def test_custom_missing_markers_replace_the_default(tmp_path):
    # given a column using "?" for unknown
    df = _frame()
    df.loc[:4, "Source"] = "?"
    path = tmp_path / "leads.csv"
    df.to_csv(path, index=False)
    # when "?" is the only marker
    t = read_table(path, "Converted", missing=["?", ""])
    # then "?" is missing and "Select" is an ordinary value
    src = t.values()["Source"]
    assert all(v is None for v in src[:5])
    assert "Select" in set(src)


def test_id_option_and_drop(tmp_path):
    # given an export
    path = tmp_path / "leads.csv"
    _frame().to_csv(path, index=False)
    # when an id column and a dropped column are named
    t = read_table(path, "Converted", id_column="Lead ID", drop=["Minutes"])
    # then the id names the leads and neither is a feature
    assert t.lead_ids[0] == "L00000"
    assert "Lead ID" not in t.features and "Minutes" not in t.features


def test_parquet_is_read_with_the_same_inference(tmp_path):
    # given the export as Parquet (typed numbers)
    df = _frame()
    path = tmp_path / "leads.parquet"
    df.to_parquet(path, index=False)
    # when it is read
    t = read_table(path, "Converted")
    # then the kinds match the CSV reading, and codes read as text
    assert t.columns["Visits"].kind == "numeric" and t.columns["Rating"].kind == "categorical"
    assert set(t.values()["Rating"]) <= {"1", "2", "3"}


def test_rows_without_label_are_left_out_and_reported(tmp_path):
    # given three rows with no outcome yet
    df = _frame().astype({"Converted": object})
    df.loc[[3, 50, 51], "Converted"] = ""
    path = tmp_path / "leads.csv"
    df.to_csv(path, index=False)
    # when it is read
    t = read_table(path, "Converted")
    # then they are left out, counted and named by data row
    assert t.excluded_rows == [4, 51, 52]
    assert len(t.label) == len(df) - 3
    assert any("3 row(s)" in n and "4, 51, 52" in n for n in t.notes)


def test_label_needs_positive_when_not_binary_looking(tmp_path):
    # given a text outcome column
    df = _frame()
    df["Converted"] = np.where(df["Converted"] == 1, "Won", "Open")
    path = tmp_path / "leads.csv"
    df.to_csv(path, index=False)
    # when it is read without --positive, the problem names the column and the remedy
    with pytest.raises(DataError) as e:
        read_table(path, "Converted")
    assert e.value.problems[0].column == "Converted" and "--positive" in e.value.problems[0].reason
    # and with --positive the label is built
    t = read_table(path, "Converted", positive="Won")
    assert t.label.sum() == (df["Converted"] == "Won").sum()


def test_bad_files_name_file_row_column_and_reason(tmp_path):
    # given a numeric column with one stray word in data row 7
    df = _frame()
    df["Visits"] = df["Visits"].astype(object)
    df.loc[6, "Visits"] = "lots"
    path = tmp_path / "leads.csv"
    df.to_csv(path, index=False)
    # when it is read, then the problem is at file, row 7, column Visits, with the value
    with pytest.raises(DataError) as e:
        read_table(path, "Converted")
    (p,) = e.value.problems
    assert (p.file, p.row, p.column) == (str(path), 7, "Visits") and "'lots' is not a number" in p.reason

    # given a line with a field too many
    text = path.read_text().splitlines()
    text[3] += ",extra"
    bad = tmp_path / "ragged.csv"
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError) as e:
        read_table(bad, "Converted")
    assert e.value.problems[0].row == 3 and "fields where the header has" in e.value.problems[0].reason

    # given a label name with a typo, the problem suggests the right one
    with pytest.raises(DataError) as e:
        read_table(path, "Convertd")
    assert "did you mean 'Converted'" in e.value.problems[0].reason

    # given a file that is not UTF-8, a duplicated header and an empty file
    latin = tmp_path / "latin.csv"
    latin.write_bytes("Name,Converted\nJos\xe9,1\n".encode("latin-1"))
    dup = tmp_path / "dup.csv"
    dup.write_text("a,a,Converted\n1,2,1\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for f, expected in ((latin, "not UTF-8"), (dup, "appears twice"), (empty, "empty")):
        with pytest.raises(DataError) as e:
            read_table(f, "Converted")
        assert e.value.problems[0].file == str(f) and expected in e.value.problems[0].reason


def test_flat_values_match_training_values(tmp_path):
    # given a table read for training
    path = tmp_path / "leads.csv"
    _frame().to_csv(path, index=False)
    t = read_table(path, "Converted", id_column="Lead ID")
    spec = t.spec(t.features)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    # when raw rows go through the scoring-time conversion
    values, ids = flat_values(raw, spec)
    # then they equal the training values, and ids come from the id column
    train = t.values()
    for name in t.features:
        a, b = values[name], train[name]
        if t.columns[name].kind == "numeric":
            np.testing.assert_array_equal(a, b)
        else:
            assert list(a) == list(b)
    assert ids[:2] == ["L00000", "L00001"]
