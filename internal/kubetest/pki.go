package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files the control plane generates in its directory.
const (
	serverCertFile = "apiserver.crt" // self-signed serving certificate (also the client's CA)
	serverKeyFile  = "apiserver.key"
	saKeyFile      = "service-account.key" // signs service-account tokens
	saPubFile      = "service-account.pub" // verifies them
	tokenFile      = "tokens.csv"          // --token-auth-file
)

// Users of the token file. AdminUser is in system:masters, so RBAC allows
// it everything; NobodyUser has no role at all (for RBAC refusals).
const (
	AdminUser  = "endpointkit-admin"
	NobodyUser = "endpointkit-nobody"
)

// writePKI writes the serving certificate and key, the service-account key
// pair and the token file into dir, returning the tokens of AdminUser and
// NobodyUser.
func writePKI(dir string) (token, nobody string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "endpointkit-test-apiserver"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	if err := writePEM(filepath.Join(dir, serverCertFile), "CERTIFICATE", der, 0o644); err != nil {
		return "", "", err
	}
	if err := writeECKey(filepath.Join(dir, serverKeyFile), key); err != nil {
		return "", "", err
	}

	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	if err := writeECKey(filepath.Join(dir, saKeyFile), sa); err != nil {
		return "", "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return "", "", err
	}
	if err := writePEM(filepath.Join(dir, saPubFile), "PUBLIC KEY", pub, 0o644); err != nil {
		return "", "", err
	}

	if token, err = randomToken(); err != nil {
		return "", "", err
	}
	if nobody, err = randomToken(); err != nil {
		return "", "", err
	}
	lines := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n%s,%s,%s\n", token, AdminUser, AdminUser, nobody, NobodyUser, NobodyUser)
	if err := os.WriteFile(filepath.Join(dir, tokenFile), []byte(lines), 0o600); err != nil {
		return "", "", err
	}
	return token, nobody, nil
}

func randomToken() (string, error) {
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(raw[:]), nil
}

func writeECKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}
