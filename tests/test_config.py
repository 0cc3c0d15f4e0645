import pytest

from corral import InvalidConfig, Sandbox


@pytest.mark.parametrize(
    ("configure", "field"),
    [
        (lambda b: b.memory(0), "memory_mib"),
        (lambda b: b.cpus(0), "cpus"),
        (lambda b: b.cpus(100000), "cpus"),
        (lambda b: b.workdir("relative"), "workdir"),
        (lambda b: b.env({"A=B": "x"}), "env"),
        (lambda b: b.accel("hyperv"), "accel"),
    ],
)
def test_bad_settings_name_the_field(configure, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidConfig) as error:
        configure(Sandbox.builder("ok")).config()
    assert error.value.field == field
    assert field in str(error.value)


@pytest.mark.parametrize("name", ["", "UPPER", "-lead", "trail-", "a" * 64, "under_score"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidConfig, match="name"):
        Sandbox.builder(name).config()


def test_builder_collects_everything() -> None:
    config = (
        Sandbox.builder("demo")
        .image("default")
        .cpus(1)
        .memory(128)
        .env({"A": "1"}, B="2")
        .workdir("/tmp")
        .cmd(["sleep", "1"])
        .config()
    )
    assert (config.memory_mib, config.env, config.workdir) == (128, {"A": "1", "B": "2"}, "/tmp")
