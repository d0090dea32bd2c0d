"""Versions of the cache formats. A rule passes its format as a parameter, so a format change reruns exactly the jobs
it affects (and nothing else); kept apart from the code that writes them so that reading a version costs no torch."""

RELATIVE_CACHE = 3  # RelativeSpace.to_table: 3 = optional exact tail envelopes, 2 = tail clusters, 1 = one mean row
