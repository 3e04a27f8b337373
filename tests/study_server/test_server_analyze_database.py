"""`maco-study analyze URL`: the analysis reads exports only, so the maco-study CLI exports the study
database with the server's export first; the report folder gets the responses, never the Prolific ids."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from maco_study import main as maco_study

from .conftest import Walker, make_app


def test_analyze_a_database_url_goes_through_the_servers_export(sqlite_url: str, bundle: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:  # noqa: ANN001
    app = make_app(sqlite_url, bundle)
    answered = 0
    for _ in range(4):
        person = Walker(app)
        person.to_trials()
        answered += person.answer_all()
        assert person.complete().status_code == 200
    analysed = {}
    import analysis.cli

    monkeypatch.setattr(analysis.cli.analyze, "callback", lambda **options: analysed.update(options))
    out = tmp_path / "report"
    result = CliRunner().invoke(maco_study, ["analyze", sqlite_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    responses = Path(analysed["responses"])
    assert responses == out / "export" / "responses.csv" and (out / "export" / "codebook.md").is_file()
    with responses.open() as f:
        assert len(list(csv.DictReader(f))) == answered  # practice, main and catch: every answered trial
    assert not list(out.rglob("prolific_ids.csv"))  # the Prolific ids never land in a report folder
    exported = tmp_path / "direct"
    assert CliRunner().invoke(maco_study, ["export", "--db", sqlite_url, "--out", str(exported / "r.csv")]).exit_code == 0
    assert (exported / "r.csv").read_text() == responses.read_text()  # the same rows as `maco-study export`
    app.extensions["maco"].engine.dispose()


def test_the_analysis_alone_refuses_a_database_url_without_a_query() -> None:
    from analysis.load import ExportError, load_export

    with pytest.raises(ExportError, match="the analysis reads exports; .* `maco-study analyze URL`"):
        load_export("sqlite:///study.db")
