from imgops import main

main()
