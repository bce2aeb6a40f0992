"""``sap-payments.toml`` (docs/formats.md, section 3): loading, defaults, and errors that name
the setting."""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path

import pytest

from sap_payments.beneficiaries import Channel
from sap_payments.cli import main
from sap_payments.config import DEFAULT_PROGRAMME, Config
from sap_payments.errors import ConfigError, InvalidInput
from sap_payments.ledger import Ledger
from sap_payments.rules import RuleSet

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
DEFAULT_RULES = resources.files("sap_payments.data") / "vn_default_rules.toml"


def test_example_config() -> None:
    config = Config.load(EXAMPLES / "sap-payments.toml")
    assert config.currency == "VND"
    assert config.programme == "monthly-allowance"
    assert config.rules is None
    assert config.source == str(EXAMPLES / "sap-payments.toml")
    assert {name: (p.plugin, p.channel) for name, p in config.providers.items()} == {
        "viettelpay": ("sandbox-ewallet", Channel.EWALLET),
        "vietinbank": ("sandbox-bank", Channel.BANK),
        "vnpost": ("sandbox-postal", Channel.POSTAL),
    }
    assert all(p.name == name for name, p in config.providers.items())


def test_defaults() -> None:
    config = Config.loads("")
    assert (config.currency, config.programme, config.rules) == ("VND", DEFAULT_PROGRAMME, None)
    assert dict(config.providers) == {}


def test_other_provider_keys_are_plugin_settings() -> None:
    config = Config.loads(
        '[providers.vtp]\nplugin = "sandbox-ewallet"\nchannel = "ewallet"\n'
        'base_url = "https://sandbox.example"\ntimeout = 5\n'
    )
    provider = config.providers["vtp"]
    assert dict(provider.settings) == {"base_url": "https://sandbox.example", "timeout": 5}
    with pytest.raises(TypeError):
        provider.settings["timeout"] = 6  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("currencies = 'VND'", "currencies", "unknown setting"),
        ("currency = 'VND'\n[provider.x]\nplugin = 'p'", "provider", "unknown setting"),
        ("currency = 'XYZ'", "currency", "unknown currency"),
        ("currency = 'vnd'", "currency", "unknown currency"),
        ("currency = 704", "currency", "unknown currency"),
        ("programme = ''", "programme", "non-empty string"),
        ("programme = 7", "programme", "non-empty string"),
        ("rules = ''", "rules", "rule-set TOML file"),
        ("rules = ['a.toml']", "rules", "rule-set TOML file"),
        ("providers = 'viettelpay'", "providers", "must be a table"),
        ("providers = { momo = 1 }", "providers.momo", "must be a table"),
        ("[providers.momo]\nchannel = 'ewallet'", "providers.momo", "plugin"),
        ("[providers.momo]\nplugin = ''\nchannel = 'ewallet'", "providers.momo", "plugin"),
        ("[providers.momo]\nplugin = 3\nchannel = 'ewallet'", "providers.momo", "plugin"),
        ("[providers.momo]\nplugin = 'p'", "providers.momo", "channel"),
        ("[providers.momo]\nplugin = 'p'\nchannel = 'cash'", "providers.momo", "channel"),
        ("[providers.momo]\nplugin = 'p'\nchannel = 'EWALLET'", "providers.momo", "channel"),
    ],
)
def test_errors_name_the_key(text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Config.loads(text, source="agency.toml")
    error = excinfo.value
    assert error.key == key
    assert error.source == "agency.toml"
    assert str(error).startswith(f"agency.toml: {key}: ")
    assert words in str(error)
    assert isinstance(error, InvalidInput)
    assert isinstance(error, ValueError)


def test_bad_toml() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Config.loads('currency = "VND"\nprogramme = = 1\n', source="agency.toml")
    assert excinfo.value.key is None
    message = str(excinfo.value)
    assert message.startswith("agency.toml: not valid TOML")
    assert "line 2" in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Config.load(tmp_path / "missing.toml")
    assert "cannot read" in str(excinfo.value)
    assert str(tmp_path / "missing.toml") in str(excinfo.value)


def test_not_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "agency.toml"
    path.write_bytes(b'programme = "tr\xe1 c\xe1p"\n')  # Latin-1 bytes, not UTF-8
    with pytest.raises(ConfigError):
        Config.load(path)


@pytest.mark.parametrize("value", ["['VND']", "{ code = 'VND' }"])
def test_currency_of_the_wrong_type(value: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Config.loads(f"currency = {value}", source="agency.toml")
    assert excinfo.value.key == "currency"


# -- the rules path -------------------------------------------------------------------------------
def province_rules(path: Path, name: str) -> Path:
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    head, _, tail = text.partition("\nname = ")
    tail = tail.split("\n", 1)[1]
    text = f'{head}\nname = "{name}"\n{tail}'.replace("amount = 360_000", "amount = 400_000")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_relative_rules_path_is_resolved_against_the_config_file(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    path = config_dir / "sap-payments.toml"
    path.write_text('rules = "rules/province-46.toml"\n', encoding="utf-8")
    assert Config.load(path).rules == config_dir / "rules" / "province-46.toml"
    absolute = tmp_path / "elsewhere" / "r.toml"
    path.write_text(f"rules = {json.dumps(str(absolute))}\n", encoding="utf-8")
    assert Config.load(path).rules == absolute
    # text without a file has nothing to be relative to
    assert Config.loads('rules = "r.toml"').rules == Path("r.toml")


def test_relative_rules_are_used_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    province_rules(config_dir / "rules" / "province-46.toml", "Thừa Thiên Huế 2021")
    config_path = config_dir / "sap-payments.toml"
    config_path.write_text('rules = "rules/province-46.toml"\n', encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the rules file is not under the working directory

    out = io.StringIO()
    assert main(["--config", str(config_path), "rules", "show", "--format", "json"], out=out) == 0
    document = json.loads(out.getvalue())
    assert document["name"] == "Thừa Thiên Huế 2021"
    assert ("2021-07-01", 400_000) in [(r["code"], r["value"]) for r in document["rules"]]

    with Ledger.open(work / "l.db", config=Config.load(config_path), durable=False) as ledger:
        assert ledger.rules.name == "Thừa Thiên Huế 2021"
        ledger.import_roster(EXAMPLES / "roster.csv")
        ledger.prepare("2021-09")
        amounts = {r.beneficiary_id: r.amount for r, _ in ledger.instructions("2021-09")}
    assert amounts["PL-0001"] == 400_000  # the province's level, coefficient 1.0


def test_rules_option_overrides_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    configured = province_rules(tmp_path / "configured.toml", "Configured")
    given = province_rules(tmp_path / "given.toml", "Given")
    config_path = tmp_path / "c.toml"
    config_path.write_text(f"rules = {json.dumps(configured.name)}\n", encoding="utf-8")
    out = io.StringIO()
    argv = [
        "--config",
        str(config_path),
        "--rules",
        str(given),
        "rules",
        "show",
        "--format",
        "json",
    ]
    assert main(argv, out=out) == 0
    assert json.loads(out.getvalue())["name"] == "Given"
    assert RuleSet.load(configured).name == "Configured"


def test_find_uses_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Config.find() == Config()
    (tmp_path / "sap-payments.toml").write_text('programme = "social-pension"\n', encoding="utf-8")
    found = Config.find()
    assert found.programme == "social-pension"
    other = tmp_path / "other.toml"
    other.write_text('programme = "funeral-grant"\n', encoding="utf-8")
    assert Config.find(other).programme == "funeral-grant"


def test_configured_programme_is_the_cli_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sap-payments.toml").write_text('programme = "social-pension"\n', encoding="utf-8")
    out = io.StringIO()
    assert main(["import", "roster", str(EXAMPLES / "roster.csv")], out=out) == 0
    with Ledger.open(tmp_path / "sap-payments.db") as ledger:
        assert len(list(ledger.store.beneficiaries("social-pension"))) == 12
        assert list(ledger.store.beneficiaries(DEFAULT_PROGRAMME)) == []
