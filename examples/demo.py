"""A small program to profile: a particle simulation with attribute access, float
arithmetic, calls and a comprehension, running for argv[1] seconds (default 3)."""
import math
import sys
import time


class Particle(object):
    def __init__(self, x, y, vx, vy):
        self.x = x
        self.y = y
        self.vx = vx
        self.vy = vy

    def step(self, dt):
        self.x += self.vx * dt
        self.y += self.vy * dt
        if self.x < 0.0 or self.x > 1.0:
            self.vx = -self.vx
        if self.y < 0.0 or self.y > 1.0:
            self.vy = -self.vy


def make_particles(n):
    return [Particle(i / n, (i * 7 % n) / n, math.sin(i), math.cos(i)) for i in range(n)]


def energy(particles):
    return sum([0.5 * (p.vx * p.vx + p.vy * p.vy) for p in particles])


def simulate(particles, steps):
    for _ in range(steps):
        for p in particles:
            p.step(0.01)
    return energy(particles)


def main(seconds):
    particles = make_particles(500)
    end = time.time() + seconds
    total = 0.0
    while time.time() < end:
        total += simulate(particles, 10)
    print("energy %.3f" % total)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
