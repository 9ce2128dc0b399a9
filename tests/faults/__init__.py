"""Faults injected into a running master and its workers, and hostile input on its ports: the
master must stay up, keep building, lose nothing accepted and run nothing twice."""
