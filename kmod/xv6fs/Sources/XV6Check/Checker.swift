import XV6Layout
