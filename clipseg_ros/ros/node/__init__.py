"""The segment node (`segment_node.py`: lifecycle and wiring) and its parts, one job each."""
