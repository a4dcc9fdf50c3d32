"""`{% change pct %}`: a percentage change with its direction, for KPI tiles and trend tables.

    {% change comparison.cost_change_pct %}            -> ▲ 12.5 % (warning colour: spend went up)
    {% change comparison.tokens_change_pct spend=False %}  -> ▲ 12.5 % (neutral colour)
    {% change None %}                                  -> — (nothing to compare with)
"""

from __future__ import annotations

from django import template
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def change(pct: float | None, spend: bool = True) -> str:
    if pct is None:
        return format_html('<span class="change none" title="{}">—</span>', "No data in the previous period")
    if pct > 0:
        arrow, direction = "▲", "up"
    elif pct < 0:
        arrow, direction = "▼", "down"
    else:
        arrow, direction = "", "flat"
    # More spend is the thing to notice; more tokens is neither good nor bad on its own.
    tone = {"up": "warn", "down": "ok"}.get(direction, "") if spend else ""
    return format_html(
        '<span class="change {} {}" data-change="{}">{} {}&#8239;%</span>',
        direction, tone, pct, arrow, f"{abs(pct):,.1f}",
    )
