"""Provider plugin discovery through entry points, with throw-away distributions made on disk
(a ``.dist-info`` folder on ``sys.path`` is what ``importlib.metadata`` finds)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sap_payments import Config, ConfigError
from sap_payments.plugins import (
    DuplicatePlugin,
    PluginLoadError,
    UnknownPlugin,
    available_plugins,
    load_plugin,
    open_providers,
)


def distribution(root: Path, name: str, version: str, entries: dict[str, str]) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = "\n".join(f"{key} = {value}" for key, value in entries.items())
    (info / "entry_points.txt").write_text(f"[sap_payments.providers]\n{lines}\n", encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [m for m in sys.modules if m.startswith("fake_plugin")]:
        del sys.modules[module]


GOOD = """
from sap_payments.providers import Capabilities, Result, ResultKind
from sap_payments.beneficiaries import Channel

class Fake:
    def __init__(self, name, settings):
        self.name = name
        self.settings = dict(settings)
        self.capabilities = Capabilities(channels=frozenset({Channel.EWALLET}))
    def submit(self, payments):
        return [Result(p.key, ResultKind.PENDING) for p in payments]
    def status(self, keys):
        return [Result(k, ResultKind.NOT_FOUND) for k in keys]
    def validate(self, address, payee_name=None):
        raise NotImplementedError
    def parse_report(self, data):
        return []
    def close(self):
        pass
"""


def test_listing_imports_nothing_and_loading_is_lazy(site: Path) -> None:
    (site / "fake_plugin_good.py").write_text(GOOD, encoding="utf-8")
    distribution(site, "fake-momo", "1.2.0", {"fake-momo": "fake_plugin_good:Fake"})
    listed = {p.name: p for p in available_plugins()}
    assert listed["fake-momo"].distribution == "fake-momo 1.2.0"
    assert listed["fake-momo"].value == "fake_plugin_good:Fake"
    assert "fake_plugin_good" not in sys.modules  # listing imported nothing
    factory = load_plugin("fake-momo")
    assert "fake_plugin_good" in sys.modules
    provider = factory("momo", {"api_key": "k"})
    assert provider.name == "momo"


def test_a_configured_instance_binds_a_plugin_to_its_settings(site: Path) -> None:
    (site / "fake_plugin_good.py").write_text(GOOD, encoding="utf-8")
    distribution(site, "fake-momo", "1.2.0", {"fake-momo": "fake_plugin_good:Fake"})
    config = Config.loads(
        '[providers.momo]\nplugin = "fake-momo"\nchannel = "ewallet"\nurl = "https://x"\n'
    )
    providers = open_providers(config)
    assert providers["momo"].name == "momo"
    assert providers["momo"].settings == {"url": "https://x"}  # type: ignore[attr-defined]


def test_an_unknown_plugin_lists_what_is_installed(site: Path) -> None:
    with pytest.raises(UnknownPlugin, match="no provider plugin 'nope'") as caught:
        load_plugin("nope")
    assert isinstance(caught.value, LookupError)


def test_two_distributions_claiming_one_name_are_both_named(site: Path) -> None:
    (site / "fake_plugin_good.py").write_text(GOOD, encoding="utf-8")
    distribution(site, "fake-one", "1.0", {"clash": "fake_plugin_good:Fake"})
    distribution(site, "fake-two", "2.0", {"clash": "fake_plugin_good:Fake"})
    with pytest.raises(DuplicatePlugin) as caught:
        load_plugin("clash")
    assert caught.value.distributions == ["fake-one 1.0", "fake-two 2.0"]
    assert "fake-one 1.0" in str(caught.value)
    assert "fake-two 2.0" in str(caught.value)


def test_a_plugin_that_fails_to_import_names_its_distribution(site: Path) -> None:
    (site / "fake_plugin_broken.py").write_text("import no_such_module_here\n", encoding="utf-8")
    distribution(site, "fake-broken", "0.1", {"broken": "fake_plugin_broken:Provider"})
    with pytest.raises(PluginLoadError, match=r"distribution fake-broken 0\.1") as caught:
        load_plugin("broken")
    assert caught.value.distribution == "fake-broken 0.1"
    assert "ModuleNotFoundError" in str(caught.value)


def test_a_plugin_for_another_channel_is_refused_by_the_configuration(site: Path) -> None:
    (site / "fake_plugin_good.py").write_text(GOOD, encoding="utf-8")
    distribution(site, "fake-momo", "1.2.0", {"fake-momo": "fake_plugin_good:Fake"})
    config = Config.loads('[providers.momo]\nplugin = "fake-momo"\nchannel = "bank"\n')
    with pytest.raises(ConfigError, match="does not pay through bank"):
        open_providers(config)
