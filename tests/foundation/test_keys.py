import orjson

from agenttrace.cli import main
from schemas.keys import KeyStore, token_from_headers


def test_keys_are_scoped_hashed_and_revocable(tmp_path):
    store = KeyStore(tmp_path / "config.json")
    token, key = store.create("proj-a", "ci")
    assert token.startswith("sk-at-")
    assert token not in (tmp_path / "config.json").read_text()  # stored hashed only
    assert store.verify(token).project_id == "proj-a"
    assert store.verify("sk-at-wrong") is None and store.verify(None) is None
    other = KeyStore(tmp_path / "config.json")  # another process revokes it
    assert other.revoke(key.id)
    assert store.verify(token) is None


def test_first_run_generates_one_default_key(tmp_path):
    store = KeyStore(tmp_path / "config.json")
    token = store.ensure_default()
    assert token and store.verify(token).project_id == "default"
    assert store.ensure_default() is None
    new = store.reset_default()
    assert store.verify(token) is None and store.verify(new)


def test_keys_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGENTTRACE_HOME", str(tmp_path))
    assert main(["keys", "create", "--project", "acme", "--name", "bot"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    data = orjson.loads((tmp_path / "config.json").read_bytes())
    key_id = data["keys"][0]["id"]
    assert KeyStore(tmp_path / "config.json").verify(token).project_id == "acme"
    assert main(["keys", "list"]) == 0
    assert "acme" in capsys.readouterr().out
    assert main(["keys", "revoke", key_id]) == 0
    assert main(["keys", "revoke", key_id]) == 1
    assert KeyStore(tmp_path / "config.json").verify(token) is None


def test_token_from_headers():
    assert token_from_headers("Bearer sk-at-x", None) == "sk-at-x"
    assert token_from_headers(None, "sk-at-y") == "sk-at-y"
    assert token_from_headers("Basic abc", None) is None


def test_schemas_export_cli(tmp_path):
    assert main(["schemas", "export", str(tmp_path / "out")]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["agenttrace.alert-rules.v1.schema.json", "agenttrace.alerts.v1.schema.json",
                     "agenttrace.events.v1.schema.json", "agenttrace.rollups.v1.schema.json"]
    schema = orjson.loads((tmp_path / "out" / "agenttrace.events.v1.schema.json").read_bytes())
    assert schema["discriminator"]["propertyName"] == "type"
