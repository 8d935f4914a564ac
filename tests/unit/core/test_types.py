import pytest

from clipper_core.exceptions import ClipperException, ValidationError
from clipper_core.types import InputType, ModelVersion, validate_dns1123, validate_name


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("bytes", InputType.BYTES), ("b", InputType.BYTES), ("byte", InputType.BYTES),
        ("ints", InputType.INTEGERS), ("i", InputType.INTEGERS), ("integer", InputType.INTEGERS),
        ("floats", InputType.FLOATS), ("f", InputType.FLOATS),
        ("doubles", InputType.DOUBLES), ("d", InputType.DOUBLES), ("double", InputType.DOUBLES),
        ("strings", InputType.STRINGS), ("str", InputType.STRINGS), ("strs", InputType.STRINGS),
        (" Doubles ", InputType.DOUBLES),
    ],
)
def test_input_type_aliases(alias, expected):
    assert InputType.parse(alias) is expected


def test_input_type_wire_codes_and_names():
    assert [t.value for t in InputType] == [0, 1, 2, 3, 4]
    assert InputType.INTEGERS.canonical == "integers"
    assert InputType.DOUBLES.numpy_dtype == "float64"
    assert InputType.BYTES.numpy_dtype == "int8"


@pytest.mark.parametrize("bad", ["tensor", "", None, 3])
def test_unknown_input_type_names_the_choices(bad):
    with pytest.raises(ValidationError, match="integers, floats, doubles, bytes, strings"):
        InputType.parse(bad)


@pytest.mark.parametrize("good", ["m", "sum-model", "v1", "1", "a-b-c9"])
def test_dns1123_accepts(good):
    assert validate_dns1123(good, "model name") == good


@pytest.mark.parametrize("bad", ["Model", "-m", "m-", "a.b", "a_b", "", "m:1"])
def test_dns1123_rejects_with_the_original_message(bad):
    with pytest.raises(ClipperException, match="must be a valid DNS-1123 subdomain"):
        validate_dns1123(bad, "model name")


@pytest.mark.parametrize("bad", ["a,b", "a:b", "", "  ", 7, " x", "a/b", "..", ".", ".hidden",
                                 "a b", "a%20b", "a#b", "a?b", "x" * 129, "caf\u00e9", "a\nb"])
def test_stored_names_reject_separators(bad):
    with pytest.raises(ValidationError, match="Invalid app name"):
        validate_name(bad, "app name")


def test_model_version_key_and_containerless():
    mv = ModelVersion("m", "1", InputType.DOUBLES)
    assert mv.key == "m:1"
    assert not mv.has_containers
    assert ModelVersion("m", "1", InputType.DOUBLES, image="img:1").has_containers


@pytest.mark.parametrize("good", ["m", "my-model", "v1.2", "1", "App_2", "_x", "x" * 128])
def test_stored_names_accept_safe_names(good):
    assert validate_name(good, "model name") == good
