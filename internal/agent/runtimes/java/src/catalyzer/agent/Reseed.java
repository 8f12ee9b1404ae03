package catalyzer.agent;

import java.io.FileInputStream;
import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What a clone must reseed in the JDK (docs/PROTOCOL.md, forked). A clone
 * keeps its template's pid and nothing in the JDK notices a fork, so every
 * generator seeded once per JVM would repeat its template's sequence:
 *
 * <ul>
 * <li>ThreadLocalRandom: each thread's seed lives in its Thread object
 *     (threadLocalRandomSeed, ...SecondarySeed), and threads that have none
 *     yet draw one from the static seeder. All of them are set afresh.
 * <li>Math.random and StrictMath.random: the Random in their holder class
 *     gets setSeed.
 * <li>new Random() and new SplittableRandom(): their static seed
 *     generators (seedUniquifier, defaultGen) are set afresh.
 * <li>UUID.randomUUID: its SecureRandom holder gets setSeed of fresh bytes.
 *     On Linux that is a NativePRNG, whose mixing SHA1PRNG all NativePRNG
 *     instances share, so this also reseeds every new SecureRandom() and
 *     the JCA's cached default (JCAUtil), each also setSeed'ed here when it
 *     is another kind. setSeed adds to a SecureRandom's state, never
 *     replaces it.
 * <li>SHA1PRNG instances made without a seed draw it from one static
 *     seeder (sun.security.provider.SecureRandom$SeederHolder): reseeded.
 * </ul>
 *
 * Not reached: Random, SecureRandom (SHA1PRNG, DRBG) and SplittableRandom
 * instances the handler made before the fork (register a
 * catalyzer.Forks.afterFork hook for those), and the DRBG mechanism's
 * internal seeder (AbstractDrbg$SeederHolder, captured in a lambda), so
 * DRBG instances made in a clone start from their template's seeder state
 * (NativePRNG is the default).
 *
 * <p>Fields are looked up at init, in the template, so forked only draws
 * 256 bytes from /dev/urandom and stores them.
 */
final class Reseed {
    private final FileInputStream urandom;
    private final Field tlrSeed, tlrSecondary;
    private final AtomicLong tlrSeeder, randomUniquifier, splittableGen;
    private final List<Random> randoms = new ArrayList<>();
    private final List<SecureRandom> secure = new ArrayList<>();
    private final Object sha1Seeder;
    private final Method sha1SetSeed;

    Reseed() throws ReflectiveOperationException, IOException {
        urandom = new FileInputStream("/dev/urandom");
        tlrSeed = field(Thread.class, "threadLocalRandomSeed");
        tlrSecondary = field(Thread.class, "threadLocalRandomSecondarySeed");
        tlrSeeder = (AtomicLong) staticValue("java.util.concurrent.ThreadLocalRandom", "seeder");
        randomUniquifier = (AtomicLong) staticValue("java.util.Random", "seedUniquifier");
        splittableGen = (AtomicLong) staticValue("java.util.SplittableRandom", "defaultGen");
        randoms.add((Random) staticValue("java.lang.Math$RandomNumberGeneratorHolder", "randomNumberGenerator"));
        randoms.add((Random) staticValue("java.lang.StrictMath$RandomNumberGeneratorHolder", "randomNumberGenerator"));
        SecureRandom uuid = (SecureRandom) staticValue("java.util.UUID$Holder", "numberGenerator");
        secure.add(uuid);
        for (String[] f : new String[][] {
                {"sun.security.jca.JCAUtil$CachedSecureRandomHolder", "instance"},
                {"sun.security.jca.JCAUtil", "def"}}) {
            SecureRandom r = (SecureRandom) staticValue(f[0], f[1]);
            if (r != null && r != uuid) {
                secure.add(r);
            }
        }
        sha1Seeder = staticValue("sun.security.provider.SecureRandom$SeederHolder", "seeder");
        sha1SetSeed = sha1Seeder.getClass().getMethod("engineSetSeed", byte[].class);
        sha1SetSeed.setAccessible(true);
    }

    private static Field field(Class<?> c, String name) throws NoSuchFieldException {
        Field f = c.getDeclaredField(name);
        f.setAccessible(true);
        return f;
    }

    /** The value of a static field, initialising its class (in the template, not the clone). */
    private static Object staticValue(String cls, String name) throws ReflectiveOperationException {
        return field(Class.forName(cls, true, null), name).get(null);
    }

    void run() throws IOException, ReflectiveOperationException {
        byte[] fresh = urandom.readNBytes(256);
        if (fresh.length != 256) {
            throw new IOException("short read from /dev/urandom");
        }
        ByteBuffer b = ByteBuffer.wrap(fresh);
        tlrSeeder.set(b.getLong());
        randomUniquifier.set(b.getLong());
        splittableGen.set(b.getLong());
        SplittableRandom threadSeeds = new SplittableRandom(b.getLong());
        for (Thread t : threads()) {
            tlrSeed.setLong(t, threadSeeds.nextLong());
            tlrSecondary.setInt(t, threadSeeds.nextInt() | 1); // 0 means "not yet seeded"
        }
        for (Random r : randoms) {
            r.setSeed(b.getLong());
        }
        byte[] seed = new byte[32];
        for (SecureRandom r : secure) {
            b.get(seed);
            r.setSeed(seed);
        }
        b.get(seed);
        sha1SetSeed.invoke(sha1Seeder, (Object) seed);
    }

    /** Every live thread of the JVM, through the root thread group. */
    private static Thread[] threads() {
        ThreadGroup g = Thread.currentThread().getThreadGroup();
        while (g.getParent() != null) {
            g = g.getParent();
        }
        Thread[] ts = new Thread[g.activeCount() + 16];
        int n;
        while ((n = g.enumerate(ts, true)) == ts.length) {
            ts = new Thread[ts.length * 2];
        }
        Thread[] out = new Thread[n];
        System.arraycopy(ts, 0, out, 0, n);
        return out;
    }
}
