"""The staff console: community workers' tickets in the browser, in Chinese and English.

Served by the worker's own web server next to the staff API (``streams/app.py`` calls
:func:`register_console`), over the same :class:`streams.staff_api.StaffApi` methods, so the
console and the API always agree on who may see what and what a ticket allows.

==========================  ===================================================================
``web.py``                  the pages (aiohttp handlers), sessions, CSRF and access per request
``sessions.py``             signed session cookies, sign-out, CSRF tokens, form idempotency keys
``ratelimit.py``            failed sign-ins per user id and per address
``i18n.py``                 the zh/en gettext catalogues (``locale/``), compiled at load
``labels.py``               what the console calls the loop's states, kinds, outcomes and events
``chart.py``                the 48-hour usage chart and the supervisor's per-day chart (inline SVG)
``stats.py``                the supervisor's numbers (escalations, overdue, per day, valid alerts)
``history.py``              a ticket's history from the ``.ack`` topics
``operations.py``           the operator's page: dead letters, consumer lag, broker, agents
``templates/``, ``static/`` Jinja2 templates, ``console.css`` and ``console.js`` (no outside assets)
==========================  ===================================================================
"""



def register_console(app, staff_api, settings, **kwargs):
    """Serve the console on ``app``'s web server: :func:`elderwatch.console.web.register_console`."""
    from elderwatch.console.web import register_console as register

    return register(app, staff_api, settings, **kwargs)


__all__ = ["register_console"]
