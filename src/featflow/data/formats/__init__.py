"""The on-disk layouts of the real datasets this project reads and writes."""
