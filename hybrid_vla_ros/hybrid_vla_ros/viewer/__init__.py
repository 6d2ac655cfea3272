"""rerun views of runs, bags and datasets (``hybrid-vla view``, ``launch arm --view``)."""
