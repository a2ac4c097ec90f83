"""The practicals, one module per task (see practicum/tasks.py for the table)."""
