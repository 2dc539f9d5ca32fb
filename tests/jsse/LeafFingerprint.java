// What a JSSE client sees: for each 127.0.0.1 port given, a TLS handshake with this JVM's
// defaults (no SNI for an IP literal, every certificate trusted, as PI's TOFU client before it
// stores one), then one line: "<port> <sha256 of the peer's leaf> <protocol> <suite>",
// or "<port> error <exception class>". Run as a single-file source: java LeafFingerprint.java.
import java.security.MessageDigest;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;

public class LeafFingerprint {
    public static void main(String[] args) throws Exception {
        TrustManager[] trustAll = {new X509TrustManager() {
            public void checkClientTrusted(X509Certificate[] c, String a) {}
            public void checkServerTrusted(X509Certificate[] c, String a) {}
            public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
        }};
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, trustAll, null);
        for (String port : args) {
            try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket("127.0.0.1", Integer.parseInt(port))) {
                s.setSoTimeout(10000);
                s.startHandshake();
                SSLSession session = s.getSession();
                Certificate leaf = session.getPeerCertificates()[0];
                StringBuilder hex = new StringBuilder();
                for (byte b : MessageDigest.getInstance("SHA-256").digest(leaf.getEncoded())) {
                    hex.append(String.format("%02x", b));
                }
                System.out.println(port + " " + hex + " " + session.getProtocol() + " " + session.getCipherSuite());
            } catch (Exception e) {
                System.out.println(port + " error " + e.getClass().getName());
            }
        }
    }
}
