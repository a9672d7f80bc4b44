"""A template that does not parse is refused with the line of the problem, also for the errors the Liquid
parser reports without a position (an empty expression, a block left open)."""

from __future__ import annotations

import pytest

from cartback.delivery import render


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("<p>Hello</p>\n<p>x</p>\n<p>{% for item in %}</p>", "line 3, column 4"),
        ("a\n{{ x | }}", "line 2, column 1"),
        ("{% if %}", "line 1, column 4"),
        ("ok\n\n{% if x %}y{% endif %}\n{% unknowntag %}", "line 4, column 4"),
        ("a\n{% for x in y %}b", "line 2, column 1"),
        ("a\n{% if x %}b{% endfor %}", "line 2, column 15"),
    ],
)
def test_template_error_names_its_line(source, where):
    with pytest.raises(render.TemplateError) as raised:
        render.check("steps[0].html", source, html=True)
    assert f"at {where}:" in str(raised.value)


def test_template_markup_inside_raw_and_comment_is_not_judged():
    render.check("html", "{% raw %}{{ x | }}{% endraw %}", html=True)
    render.check("html", "{% comment %} {% if %} {% endcomment %}", html=True)
