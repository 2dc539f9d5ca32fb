"""The pure core: the data, the verdict, subjects, endpoints, the history diff, rows for people."""
