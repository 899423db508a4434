print("bentoctl")
