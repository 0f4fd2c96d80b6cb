"""The documents a new operator or partner reads stay in step with the code."""

from pathlib import Path

from hub.config import _ENV

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_operations():
    doc = (ROOT / "docs" / "operations.md").read_text()
    assert [name for name in _ENV if f"`{name}`" not in doc] == []


def test_readme_holds_the_two_commands_and_links_only_existing_documents():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    for line in readme.splitlines():
        if "](docs/" in line:
            target = line.split("](", 1)[1].split(")", 1)[0]
            assert (ROOT / target).exists(), target


def test_every_api_route_is_in_the_api_document():
    from hub.app import create_app
    from hub.config import Settings

    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))  # the document reads no rows
    doc = (ROOT / "docs" / "api.md").read_text()
    paths = app.test_client().get("/openapi.json").json["paths"]
    # Path parameters are spelled {name} in both; the document may group methods of one path.
    missing = [p for p in paths if p not in doc]
    assert missing == []
