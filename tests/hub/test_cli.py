from click.testing import CliRunner

from hub.cli import main


def test_init_creates_and_migrates_the_embedded_database(tmp_path):
    env = {"HASHFED_VAR_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    result = runner.invoke(main, ["init"], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "var" / "hashfed.db").exists()
    current = runner.invoke(main, ["db", "current"], env=env)
    assert current.exit_code == 0, current.output
    assert "current: " in current.output and "(none)" not in current.output
    again = runner.invoke(main, ["init"], env=env)
    assert again.exit_code == 0, again.output


def test_db_current_fails_on_an_unmigrated_database(tmp_path):
    env = {"HASHFED_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"}
    result = CliRunner().invoke(main, ["db", "current"], env=env)
    assert result.exit_code == 1
    assert "hashfed db upgrade" in result.output


def test_a_misspelt_setting_stops_the_cli_with_a_clear_message(tmp_path):
    result = CliRunner().invoke(main, ["db", "current"], env={"HASHFED_VAR_DRI": str(tmp_path)})
    assert result.exit_code != 0
    assert "unknown setting HASHFED_VAR_DRI" in result.output
