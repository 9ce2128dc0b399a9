"""The master's HTTP face: REST API, webhooks, event stream, web page, access control and metrics.

A face over :mod:`flowbot.master`: it imports the master and the model, and nothing in the core
imports it except the master, which starts the server (:func:`flowbot.web.http.serve`).
"""
