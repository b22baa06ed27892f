# Seed document 002 (002_2de926642aaa31b6.txt, LabEx: how to cancel Python
# multiprocessing tasks), example "Process Pool" (complete example 2 of 8).
# Indentation reconstructed (the page lost it). Only the import is swapped:
#   from multiprocessing import Pool -> from gopool import Pool
# The document does not show the output; the program prints:
#   [1, 4, 9, 16, 25]
from gopool import Pool
def square(x):
    return x * x
if __name__ == '__main__':
    with Pool(processes=4) as pool:
        results = pool.map(square, [1, 2, 3, 4, 5])
        print(results)
