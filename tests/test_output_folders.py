"""`compare` and `published` write under runs/ by default, where `train` puts its run folders, not into a
./compare or ./published folder beside them in whatever folder they were started from."""

from mtdqn.scripts import compare, published
from test_published import run


def test_published_writes_into_runs_published_by_default(tmp_path, monkeypatch, capsys):
    a = run(tmp_path, "a", {"frostbite": [500.0], "seaquest": [100.0]})
    monkeypatch.chdir(tmp_path)
    published.main([str(a)])
    assert sorted(p.name for p in (tmp_path / "runs" / "published").iterdir()) == [
        "published.csv", "published.json", "published.md", "published.png"]
    assert not (tmp_path / "published").exists()


def test_compare_writes_into_runs_compare_by_default(tmp_path, monkeypatch, capsys):
    a = run(tmp_path, "a", {"frostbite": [500.0], "seaquest": [100.0]})
    b = run(tmp_path, "b", {"frostbite": [600.0], "seaquest": [200.0]})
    monkeypatch.chdir(tmp_path)
    compare.main([str(a), str(b)])
    assert (tmp_path / "runs" / "compare" / "compare.md").is_file()
    assert not (tmp_path / "compare").exists()
