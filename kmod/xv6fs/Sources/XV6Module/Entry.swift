import XV6FS
