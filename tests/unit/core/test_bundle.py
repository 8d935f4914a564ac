import inspect
import subprocess
import sys
import textwrap

import pytest

from clipper_core.deployers.api import Bundle, write_bundle
from clipper_core.deployers.python import PythonDeployer
from clipper_core.exceptions import DeployError


def test_function_from_a_local_module_travels_by_value(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "my_local_model.py").write_text(textwrap.dedent("""
        SCALE = 2.0

        def predict(xs):
            return [str(SCALE * sum(x)) for x in xs]
    """))
    monkeypatch.syspath_prepend(str(src))
    import my_local_model

    bundle = write_bundle(PythonDeployer(), tmp_path / "bundle", "doubles", my_local_model.predict)
    assert Bundle.read(bundle.path).deployer == "python"
    # A fresh interpreter that cannot import my_local_model still loads the function.
    code = ("from clipper_core.deployers.api import Bundle; "
            f"f = Bundle.read({str(bundle.path)!r}).load_function(); print(f([[1.0, 2.0]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    assert out.stdout.strip() == "['6.0']"


class ScaledSum:
    """Defined in this test module, which no replica can import: it travels by value."""

    def __init__(self) -> None:
        self.scale = 3.0

    def __call__(self, xs):
        return [str(self.scale * sum(x)) for x in xs]


def test_loading_in_the_writing_process_leaves_its_classes_alone(tmp_path):
    """A class pickled by value and loaded back here is a copy; the live class keeps its own
    methods and their source (cloudpickle alone would refill it with the pickled ones)."""
    model = ScaledSum()
    init = ScaledSum.__init__
    bundle = write_bundle(PythonDeployer(), tmp_path / "bundle", "doubles",
                          lambda xs: model(xs))
    loaded = Bundle.read(bundle.path).load_function()
    assert loaded([[1.0, 2.0]]) == ["9.0"]
    assert ScaledSum.__init__ is init
    assert "self.scale = 3.0" in inspect.getsource(ScaledSum.__init__)
    copy = loaded.__closure__[0].cell_contents
    assert type(copy) is not ScaledSum and type(copy).__qualname__ == "ScaledSum"


def test_bundle_records_what_the_replica_needs(tmp_path):
    write_bundle(PythonDeployer(), tmp_path / "b", "ints", lambda xs: xs,
                 pkgs_to_install=["sympy"])
    again = Bundle.read(tmp_path / "b")
    assert again.input_type.canonical == "integers"
    assert again.packages == ("sympy",)
    assert again.python == "{}.{}".format(*sys.version_info[:2])


def test_wrong_signature_fails_at_deploy_time(tmp_path):
    with pytest.raises(DeployError, match=r"calls func with 1 positional argument"):
        write_bundle(PythonDeployer(), tmp_path / "b", "doubles", lambda a, b: a)


def test_unpicklable_function_names_the_fix(tmp_path):
    import threading
    lock = threading.Lock()
    with pytest.raises(DeployError, match="Could not serialize the prediction function"):
        write_bundle(PythonDeployer(), tmp_path / "b", "doubles", lambda xs: [lock] * len(xs))


def test_a_directory_without_bundle_json_is_not_a_bundle(tmp_path):
    with pytest.raises(DeployError, match=r"has no bundle\.json"):
        Bundle.read(tmp_path)


def test_image_requirements_pin_the_installed_release():
    from importlib.metadata import version

    from clipper_core.deployers.api import same_as_installed

    assert same_as_installed("pluggy", ">=1") == f"pluggy=={version('pluggy')}"
    assert same_as_installed("no-such-distribution-xyz", ">=2") == "no-such-distribution-xyz>=2"
