import aubench


def test_public_api_is_exactly_what_all_lists():
    for name in aubench.__all__:  # loads the lazy names too
        assert getattr(aubench, name) is not None, name
    public = {name for name in vars(aubench) if not name.startswith("_") and name not in {"annotations"}}
    modules = {name for name in public if type(getattr(aubench, name)).__name__ == "module"}
    assert public - modules == set(aubench.__all__) - {"__version__"}
    assert sorted(dir(aubench)) == sorted(aubench.__all__)


def test_importing_aubench_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, aubench; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
