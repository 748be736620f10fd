"""Operators' tools: replay history through the detectors at every setting and choose one per kind.

* :mod:`~elderwatch.tuning.sweep`: every level in one pass (:class:`MultiLevelMonitor`), over processes;
* :mod:`~elderwatch.tuning.choose`: each kind's curve and the rule that picks its level;
* :mod:`~elderwatch.tuning.report`: the self-contained ``report.html``;
* :mod:`~elderwatch.tuning.command`: ``elderwatch tune``.
"""
