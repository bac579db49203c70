"""Docker's --format templates: the Go text/template subset scripts use, printing as Go does."""

from __future__ import annotations

import pytest

from dockyard.cli.format import table, templated
from dockyard.cli.gotemplate import TemplateError, prepare, render

OBJ = {"Name": "/web", "State": {"Status": "running", "Pid": 42, "Running": True, "ExitCode": 0},
       "Config": {"Labels": {"b": "2", "a": "1"}, "Cmd": ["sleep", "100"], "Env": []},
       "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.30.0.2"}}}}  # fmt: skip


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.State.Status}}", "running"),
        ("{{.State.Pid}} {{.State.Running}} {{.State.ExitCode}}", "42 true 0"),
        ("{{.Config.Labels}}", "map[a:1 b:2]"),  # Go prints maps with sorted keys
        ("{{.Config.Cmd}}", "[sleep 100]"),
        ("{{json .Config.Cmd}}", '["sleep","100"]'),
        ('{{index .Config.Labels "b"}}', "2"),
        ("{{.Nothing}}", "<no value>"),
        ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.30.0.2"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}", "a=1 b=2 "),
        ("{{range .Config.Env}}x{{else}}none{{end}}", "none"),
        ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
        ("{{with .State}}{{.Status}}{{end}}", "running"),
        ("{{.Name | upper}}", "/WEB"),
        ('{{join .Config.Cmd " "}}', "sleep 100"),
        ('{{printf "%s:%d" .Name .State.Pid}}', "/web:42"),
        ("{{len .Config.Cmd}}", "2"),
        ('{{eq .State.Status "running"}}', "true"),
        ("{{lower (index .Config.Labels `a`)}}", "1"),
        ("a {{- .Name -}} b", "a/webb"),
        ("{{$.Name}}{{$n := .State.Pid}}{{$n}}", "/web42"),
    ],
)
def test_templates_render_as_go_would(template: str, expected: str) -> None:
    assert render(template, OBJ) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.State", "unclosed action"),
        ("{{if .X}}", "has no {{end}}"),
        ("{{nosuch 1}}", 'function "nosuch"'),
        ("{{end}}", "unexpected {{end}}"),
    ],
)
def test_bad_templates_are_one_clear_error(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(template, OBJ)


def test_table_formats_get_docker_s_header_and_alignment() -> None:
    assert prepare("table {{.ID}}\\t{{.Names}}") == (True, "{{.ID}}\t{{.Names}}")
    rows = [{"ID": "0123456789ab", "Names": "web"}, {"ID": "ba9876543210", "Names": "db"}]
    out = templated(rows, "table {{.ID}}\\t{{.Names}}", {"ID": "CONTAINER ID", "Names": "NAMES"})
    assert out == "CONTAINER ID   NAMES\n0123456789ab   web\nba9876543210   db\n"
    assert templated(rows, "{{.Names}}", {}) == "web\ndb\n"
    # tabwriter's minimum cell width of 10, as in `docker images`: "TAG       IMAGE ID"
    assert table([["TAG", "IMAGE ID"], ["1", "abc"]]) == "TAG       IMAGE ID\n1         abc\n"
