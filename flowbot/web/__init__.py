"""The master's HTTP face: REST API, webhooks, event stream, web page, access control and metrics.

A face over :mod:`flowbot.master`: it knows the master only through the
:class:`~flowbot.web.services.WebServices` it is handed, and nothing in the core imports it; the
public :class:`flowbot.Master` (:mod:`flowbot.server`) attaches its :class:`~flowbot.web.http.HttpFace`.
"""
