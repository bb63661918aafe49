"""What a search leaves on disk: the storage (a folder or s3://), the search folders in it, and
the trials' records read back from Tune's files."""
