"""Tools around the app (the command line's layer): the classroom load test."""
