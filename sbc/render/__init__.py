"""Rendering at the edge: the only place that writes HTML.

Summaries computed elsewhere (:mod:`sbc.calibration`, :mod:`sbc.summarize`, the planner)
come in; text comes out.  :mod:`~sbc.render.html` holds the building blocks and the page
template (Jinja2, autoescape on); :mod:`~sbc.render.report` the calibration report's
sections; :mod:`~sbc.render.plan` the plan page.  Figures arrive as matplotlib ``Figure``
objects (:mod:`sbc.plots`) and are encoded here.
"""
